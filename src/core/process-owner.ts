import { readFileSync } from "node:fs";

/**
 * Files a process keeps while it runs (a ledger journal, pending settlements)
 * carry its owner tag in their names: boot, pid and start time, so that the
 * next process can tell whether their owner still runs (a reused pid is
 * another process, and nothing survives a reboot).
 */
export function ownerTag(): string {
  return `${bootId()}.${process.pid}.${startTicks(process.pid) ?? "x"}`;
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim().slice(0, 8);
  } catch {
    return "noboot";
  }
}

/** A process's start time in clock ticks since boot (Linux), or undefined where /proc cannot tell. */
function startTicks(pid: number): string | undefined {
  try {
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Whether the process that owns a file (by the owner tag in its name) is still running. */
export function ownerAlive(tag: string): boolean {
  const [boot, pid, start] = tag.split(".");
  if (boot !== bootId()) return false;
  const ticks = startTicks(Number(pid));
  if (ticks !== undefined || start !== "x") return ticks === start;
  // No /proc: a signal 0 tells whether the pid runs (this process's own files are alive).
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch {
    return false;
  }
}
