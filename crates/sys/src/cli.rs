//! Command-line parsing shared by the programs (vr-stream, vr-receive, quick-bench,
//! dashboard).

/// Parses the command line into `C`. `--help` and `--version` print and exit 0; any other
/// error prints one line, `PROG: ` and clap's first line (it names the flag, the value
/// and what is allowed), and exits with status 2.
pub fn parse_or_exit<C: clap::Parser>(prog: &str) -> C {
    match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let text = e.render().to_string();
            eprintln!("{prog}: {}", text.lines().next().unwrap_or("bad arguments"));
            std::process::exit(2);
        }
    }
}
