/**
 * Starts a real server as a subprocess (`python -m server`, or the interop service
 * `python -m tests.interop.server`) on ephemeral loopback ports and reads its ready line,
 * as tests/process_harness.py does for the Python tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

/** The repository root (web/dist/test/helpers -> ../../../..). */
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

const READY = /ready grpc=(\S+) ws=(\S+)(?:.* metrics=(\S+))?/;

/** A running server process. */
export interface RunningServer {
  readonly wsUrl: string;
  readonly grpcAddress: string;
  readonly metricsUrl: string | undefined;
  readonly process: ChildProcess;
  /** SIGTERM, then SIGKILL after 10 s; resolves when the process has exited. */
  stop(): Promise<void>;
}

/** Starts `python -m MODULE --grpc-port 0 --ws-port 0 ARGS...` and waits (30 s) for its ready line. */
export async function startServer(module: string, args: readonly string[] = []): Promise<RunningServer> {
  const python = process.env.PYTHON ?? "python";
  const pythonPath = [REPO_ROOT, `${REPO_ROOT}generated`, process.env.PYTHONPATH].filter(Boolean).join(":");
  const child = spawn(python, ["-m", module, "--grpc-port", "0", "--ws-port", "0", ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, PYTHONPATH: pythonPath },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${module} did not print its ready line within 30 s: ${stderr}`));
    }, 30_000);
    lines.on("line", (line) => {
      const found = READY.exec(line);
      if (found !== null) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${module} exited (${code}) before it was ready: ${stderr}`));
    });
  });
  return {
    grpcAddress: match[1]!,
    wsUrl: match[2]!,
    metricsUrl: match[3],
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}

/** The value of one unlabelled-or-labelled sample in a Prometheus text exposition. */
export async function scrapeMetric(metricsUrl: string, sample: string): Promise<number | undefined> {
  const text = await (await fetch(metricsUrl)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}

/** Waits (bounded) until `check()` is true; throws with `what` when it never is. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
