//! The reference server (`bench/references/reference_infer.py`), run by the Python given.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};

/// The server's source, carried in the binary: a `sd2-bench` copied to another machine
/// (`scripts/gpu/pack.sh`) finds no checkout at the path it was built in.
const SCRIPT: &str = include_str!("../../references/reference_infer.py");

pub struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Reference {
    /// Writes the server into `dir` and starts it with `python` on `config` (the CLIP
    /// configuration as JSON) and `device` (cpu or cuda).
    pub fn start(python: &str, dir: &Path, config: &Path, device: &str) -> Result<Self> {
        let script = dir.join("reference_infer.py");
        std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
        let mut child = Command::new(python)
            .arg(&script)
            .arg(config)
            .arg(device)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {python}"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        match stdout.next() {
            Some(Ok(l)) if l == "ready" => Ok(Reference {
                child,
                stdin,
                stdout,
            }),
            other => bail!("{python} {} did not start: {other:?}", script.display()),
        }
    }

    /// Seconds per iteration, or why not.
    pub fn time(&mut self, command: &str) -> Result<f64, String> {
        writeln!(self.stdin, "{command}").map_err(|e| e.to_string())?;
        let line = self
            .stdout
            .next()
            .ok_or("the reference ended")?
            .map_err(|e| e.to_string())?;
        line.parse::<f64>().map_err(|_| line)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
