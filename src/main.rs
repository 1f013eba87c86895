//! The `higuma` binary: parses the command line and hands over to `cli`.

mod cli;

// Why jemalloc: Cargo.toml, next to the dependency.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
