// Servers the tests start go away with the test process, however it ends: each registers a kill,
// and one exit hook (process exit, SIGINT, SIGTERM, SIGHUP) runs them all.
const kills = new Set<() => void>();
let installed = false;

/** Runs `kill` if this process exits before `forget` is called with it. */
export function killOnExit(kill: () => void): void {
  kills.add(kill);
  if (installed) return;
  installed = true;
  const killAll = () => {
    for (const k of kills) {
      try {
        k();
      } catch {}
    }
  };
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

export function forget(kill: () => void): void {
  kills.delete(kill);
}
