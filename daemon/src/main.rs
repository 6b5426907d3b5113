//! The `idsync` binary: see [`idsync::cli`].

/// mimalloc rather than glibc's malloc: an import, a SCIM burst or a
/// connector's delivery allocates and frees millions of small strings, many
/// freed on another thread than the one that made them (reader → writer),
/// where glibc's arenas take locks. Measured with `cargo bench -p idsync
/// --bench import`: see docs/architecture.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idsync::cli::main()
}
