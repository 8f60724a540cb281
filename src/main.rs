fn main() {
    std::process::exit(git_agent::cli::main());
}
