//! What the test binaries that drive `claude-k8s serve` without a cluster (serve.rs, policy.rs) share.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc;

/// Spawns `cmd` (with piped stdin and stdout) and reads its stdout on a thread, line by line.
pub fn spawn_with_lines(cmd: &mut Command) -> (Child, ChildStdin, mpsc::Receiver<String>) {
    let mut child = cmd.spawn().expect("spawn claude-k8s serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stdin = child.stdin.take().expect("stdin is piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, stdin, lines)
}
