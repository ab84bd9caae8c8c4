//! Command output on stdout, the one place our commands write it.
//!
//! `print!` panics when stdout is a pipe whose reader has gone (`valet
//! audit | head`). A closed pipe means the reader has what it wanted: the
//! output ends quietly and the command keeps its own exit code. Any other
//! write error (a full disk, a closed descriptor) is returned, so output is
//! never lost silently.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes it; a reader that has gone is not an error.
pub fn print(text: &str) -> io::Result<()> {
    write_to(&mut io::stdout().lock(), text)
}

fn write_to(w: &mut impl Write, text: &str) -> io::Result<()> {
    match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_gone_reader_ends_output_quietly_and_other_errors_surface() {
        assert!(write_to(&mut Failing(io::ErrorKind::BrokenPipe), "x").is_ok());
        let e = write_to(&mut Failing(io::ErrorKind::StorageFull), "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let mut buf = Vec::new();
        write_to(&mut buf, "report\n").unwrap();
        assert_eq!(buf, b"report\n");
    }
}
