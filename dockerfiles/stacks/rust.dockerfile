# Rust: Debian's toolchain and a C compiler for -sys crates.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cargo rustc build-essential pkg-config && rm -rf /var/lib/apt/lists/*
