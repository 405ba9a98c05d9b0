// Where the `claude-k8s` binary is: `CLAUDE_K8S_BINARY_PATH`, else `<package dir>/bin/claude-k8s` (npm/pack.sh
// copies the release binary there). Every failure is an error that says what to do.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BINARY_ENV = "CLAUDE_K8S_BINARY_PATH";

/** The package's own version (the binary it ships must say the same in its `hello`). */
export const PACKAGE_VERSION = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, "package.json"), "utf8")).version;

export class BinaryError extends Error {
  constructor(message) {
    super(message);
    this.name = "BinaryError";
    this.code = "claude_k8s_binary_unavailable";
  }
}

function checkExecutable(file, origin) {
  let stat;
  try {
    stat = fs.statSync(file);
  } catch {
    return `${origin} ${file} does not exist`;
  }
  if (!stat.isFile()) return `${origin} ${file} is not a file`;
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch {
    return `${origin} ${file} is not executable (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 755 ${file}`;
  }
  return null;
}

/**
 * @returns {{ path: string, fromEnv: boolean }}  `fromEnv` relaxes the handshake to a protocol check only.
 * @throws {BinaryError}
 */
export function resolveBinary({ env = process.env, packageDir = PACKAGE_DIR } = {}) {
  const override = env[BINARY_ENV];
  if (typeof override === "string" && override.trim() !== "") {
    const file = path.resolve(override.trim());
    const problem = checkExecutable(file, `${BINARY_ENV}:`);
    if (problem) throw new BinaryError(`${problem}. Unset ${BINARY_ENV} to use the binary shipped in the package.`);
    return { path: file, fromEnv: true };
  }
  const file = path.join(packageDir, "bin", "claude-k8s");
  const problem = checkExecutable(file, "the bundled binary");
  if (problem) {
    const platform = `${process.platform}-${process.arch}`;
    const hint =
      platform === "linux-x64"
        ? `The npm package ships it (linux-x64) inside the tarball built by npm/pack.sh; reinstall the adapter from ` +
          `that tarball, or set ${BINARY_ENV} to a claude-k8s binary.`
        : `The bundled binary is built for linux-x64 only and this server runs on ${platform}; ` +
          `set ${BINARY_ENV} to a claude-k8s binary built for this platform.`;
    throw new BinaryError(`${problem}. ${hint}`);
  }
  return { path: file, fromEnv: false };
}
