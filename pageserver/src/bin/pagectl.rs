//! `pagectl`: an operator tool for the page server's on-disk files.
//!
//! It reads what the page server writes under its work directory
//! (`tenants/TENANT/timelines/TIMELINE/`: the `metadata` file and the delta
//! and image layer files) without a running server and without changing
//! anything:
//!
//! - `pagectl layer summary FILE` and `pagectl layer dump FILE` show what a
//!   layer file holds ([`layer`]);
//! - `pagectl metadata FILE` prints a timeline metadata file as JSON;
//! - `pagectl verify DIR` checks every checksum of every metadata and layer
//!   file below a timeline, tenant or work directory ([`verify`]).
//!
//! Exit codes: 0 success, 1 failure (a file failed to verify or could not be
//! read), 2 usage error (bad arguments, or a directory that holds no page
//! server data).

// A binary's root file takes its modules from its own folder: point at ours.
#[path = "pagectl/layer.rs"]
mod layer;
#[cfg(test)]
#[path = "pagectl/test_fixture.rs"]
mod test_fixture;
#[path = "pagectl/verify.rs"]
mod verify;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pageserver::tenant::metadata::TimelineMetadata;

/// Exit code: everything worked and verified.
const EXIT_OK: u8 = 0;
/// Exit code: a file failed to verify or could not be read.
const EXIT_FAILURE: u8 = 1;
/// Exit code: bad arguments (the same code clap uses).
const EXIT_USAGE: u8 = 2;

/// Largest metadata file read. A valid one is a few hundred bytes; the
/// format allows 64 KiB of body, so anything past this is not metadata.
const MAX_METADATA_FILE: u64 = 1024 * 1024;

/// Inspect and verify the page server's on-disk files (layer files, timeline
/// metadata). Reads only; never changes a file.
#[derive(Debug, Parser)]
#[command(name = "pagectl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect one delta or image layer file.
    #[command(subcommand)]
    Layer(LayerCommand),
    /// Print a timeline metadata file as pretty JSON.
    Metadata {
        /// The `metadata` file of a timeline directory.
        file: PathBuf,
    },
    /// Check every metadata and layer file below a directory.
    ///
    /// Checks metadata checksums, the whole-file checksum and every value of
    /// every layer file, the tenant and timeline ids in layer headers
    /// against the directory names, and each timeline's local copy of its
    /// remote index (`remote_index.json`). Temporary and ephemeral files are
    /// skipped; other stray files are reported as UNEXPECTED. Prints one line
    /// per file (OK or FAILED with the error) and a final count. Exit code 0
    /// if everything verified, 1 if anything failed, 2 if DIR holds no page
    /// server data.
    Verify {
        /// A timeline directory (holds `metadata` and layer files), a tenant
        /// directory (holds `timelines/`) or a page server work directory
        /// (holds `tenants/`).
        dir: PathBuf,
    },
}

/// `pagectl layer` subcommands.
#[derive(Debug, Subcommand)]
enum LayerCommand {
    /// Kind, ids, key and LSN ranges, size and value counts of a layer file.
    Summary {
        /// The layer file.
        file: PathBuf,
    },
    /// One line per (key, LSN): key, decoded key kind, LSN, value summary.
    Dump {
        /// The layer file.
        file: PathBuf,
        /// Also print each value: image bytes in hex (first 64 bytes) and
        /// records in full.
        #[arg(long)]
        values: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|code| {
        out.flush().context("cannot write to standard output")?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`pagectl layer dump F | head`): nothing to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("pagectl: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs one command, writing its output to `out`; returns the exit code.
/// Usage errors found after parsing (a directory holding no page server
/// data) are printed to stderr here and give [`EXIT_USAGE`]; other errors are
/// returned.
fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Layer(LayerCommand::Summary { file }) => {
            let summary = layer::summarize(&file)?;
            write!(out, "{summary}")?;
            Ok(EXIT_OK)
        }
        Command::Layer(LayerCommand::Dump { file, values }) => {
            layer::dump(&file, values, out)?;
            Ok(EXIT_OK)
        }
        Command::Metadata { file } => {
            let metadata = read_metadata(&file)?;
            serde_json::to_writer_pretty(&mut *out, &metadata)
                .context("cannot write metadata as JSON")?;
            writeln!(out)?;
            Ok(EXIT_OK)
        }
        Command::Verify { dir } => {
            let mut write_error = None;
            let report = verify::verify_dir(&dir, &mut |finding| {
                if write_error.is_none() {
                    if let Err(e) = writeln!(out, "{finding}") {
                        write_error = Some(e);
                    }
                }
            });
            let report = match report {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("pagectl: {e}");
                    return Ok(EXIT_USAGE);
                }
            };
            if let Some(e) = write_error {
                return Err(e.into());
            }
            writeln!(out, "{}", report.summary_line())?;
            Ok(if report.is_ok() {
                EXIT_OK
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Reads and checks a timeline metadata file (magic, version, length,
/// checksum, body). The error names the file.
fn read_metadata(path: &Path) -> anyhow::Result<TimelineMetadata> {
    let file = File::open(path)
        .with_context(|| format!("cannot open metadata file {}", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_METADATA_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read metadata file {}", path.display()))?;
    if buf.len() as u64 > MAX_METADATA_FILE {
        anyhow::bail!(
            "metadata file {} is larger than {MAX_METADATA_FILE} bytes: not a metadata file",
            path.display()
        );
    }
    TimelineMetadata::from_bytes(&buf)
        .with_context(|| format!("metadata file {} is invalid", path.display()))
}

/// Whether the error is a write to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixture::Fixture;

    /// Parses `args` and runs them, returning the exit code and stdout.
    fn pagectl(args: &[&str]) -> (u8, String) {
        let cli = Cli::try_parse_from(std::iter::once("pagectl").chain(args.iter().copied()))
            .expect("arguments parse");
        let mut out = Vec::new();
        let code = run(cli, &mut out).unwrap_or(EXIT_FAILURE);
        (code, String::from_utf8(out).expect("output is UTF-8"))
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["pagectl"][..],
            &["pagectl", "verify"],
            &["pagectl", "layer", "dump"],
            &["pagectl", "layer", "frobnicate", "x"],
            &["pagectl", "metadata", "a", "b"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("must not parse");
            assert_eq!(err.exit_code(), EXIT_USAGE as i32, "{args:?}");
        }
    }

    #[test]
    fn verify_exit_codes() {
        let fx = Fixture::new();
        let timeline = fx.timeline_dir.to_str().unwrap();
        let (code, out) = pagectl(&["verify", fx.workdir.to_str().unwrap()]);
        assert_eq!(code, EXIT_OK, "{out}");
        assert!(
            out.ends_with("verified 2 layer files, 1 metadata files, 0 failures\n"),
            "{out}"
        );

        let empty = tempfile::tempdir().unwrap();
        let (code, _) = pagectl(&["verify", empty.path().to_str().unwrap()]);
        assert_eq!(code, EXIT_USAGE);

        fx.flip_byte(&fx.image_layer, 120);
        let (code, out) = pagectl(&["verify", timeline]);
        assert_eq!(code, EXIT_FAILURE, "{out}");
        assert!(out.contains("FAILED"), "{out}");
        assert!(out.ends_with("1 failures\n"), "{out}");
    }

    #[test]
    fn metadata_prints_json() {
        let fx = Fixture::new();
        let path = fx.timeline_dir.join("metadata");
        let (code, out) = pagectl(&["metadata", path.to_str().unwrap()]);
        assert_eq!(code, EXIT_OK);
        let printed: TimelineMetadata = serde_json::from_str(&out).expect("output is JSON");
        assert_eq!(printed, fx.metadata);

        fx.flip_byte(&path, 20);
        let err = read_metadata(&path).unwrap_err();
        assert!(format!("{err:#}").contains(&path.display().to_string()));
    }
}
