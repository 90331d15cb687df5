//! Backing up a stream (stdin, or a command's output) as one file.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A stream to back up as a single file named `name` at the snapshot root.
pub struct StreamSource {
    pub(crate) name: String,
    pub(crate) reader: Box<dyn Read + Send>,
}

impl StreamSource {
    /// Backs up everything `reader` yields as file `name`. A read error
    /// fails the whole backup (there is no file to skip to).
    pub fn new(name: impl Into<String>, reader: Box<dyn Read + Send>) -> StreamSource {
        StreamSource { name: name.into(), reader }
    }

    /// Runs `program` with `args` and backs up its standard output as file
    /// `name`. If the command exits with a failure status, the backup fails
    /// and no snapshot is written.
    pub fn command<S: AsRef<OsStr>>(
        name: impl Into<String>,
        program: S,
        args: &[S],
    ) -> io::Result<StreamSource> {
        let mut child =
            Command::new(&program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("command has no stdout"))?;
        let what = std::iter::once(&program)
            .chain(args)
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(StreamSource::new(name, Box::new(CommandReader { child, stdout, what, done: false })))
    }
}

struct CommandReader {
    child: Child,
    stdout: ChildStdout,
    what: String,
    done: bool,
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.done = true;
            let status = self.child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!("command `{}` failed ({status})", self.what)));
            }
        }
        Ok(n)
    }
}

impl Drop for CommandReader {
    fn drop(&mut self) {
        // A cancelled backup must not leave the command running.
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
