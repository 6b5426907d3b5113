//! The `idsync` binary: see [`idsync::cli`].

fn main() -> std::process::ExitCode {
    idsync::cli::main()
}
