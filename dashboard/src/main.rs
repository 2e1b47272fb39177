//! `dashboard`: live view of a running vr-stream (run it in a second terminal).
//!
//! Keys: q quit, p pause, tab focus stages / interface, arrows select, ? help. Starts
//! "waiting for vr-stream" when nothing runs and picks the stream up when it starts (and
//! again after a restart). Logs go to a file (`--log`), never to the screen.
#![forbid(unsafe_code)]

use clap::Parser;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vr_dashboard::model::Collector;
use vr_dashboard::ui::{self, View};

/// Live view of a running vr-stream: stages, latency, CPU, network, temperature.
#[derive(Parser, Debug)]
#[command(name = "dashboard", version, about)]
struct Cli {
    /// Refresh interval, ms (50..=10000).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(50..=10000))]
    interval: u64,
    /// Latency window for the percentiles, s (1..=60).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    window: u64,
    /// vr-stream instance to watch (its --instance).
    #[arg(long, default_value = vr_shm::names::DEFAULT_INSTANCE)]
    instance: String,
    /// Print one snapshot and exit (two samples one interval apart, for the rates).
    #[arg(long)]
    once: bool,
    /// With --once: the snapshot as JSON.
    #[arg(long)]
    json: bool,
    /// Log file (default ~/.cache/vr-stream/dashboard.log).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn init_log(path: Option<PathBuf>) {
    let path = path.or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vr-stream/dashboard.log"))
    });
    let Some(path) = path else { return };
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    // Never to the screen: without a writable file there is no log.
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .try_init();
    }
}

fn main() {
    let cli: Cli = vr_sys::cli::parse_or_exit("dashboard");
    if cli.json && !cli.once {
        eprintln!("dashboard: --json goes with --once");
        std::process::exit(2);
    }
    init_log(cli.log.clone());
    let interval = Duration::from_millis(cli.interval);
    let mut col = Collector::new(&cli.instance, Duration::from_secs(cli.window));
    if cli.once {
        col.collect();
        std::thread::sleep(interval);
        let snap = col.collect();
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&snap).expect("snapshot serializes")
            );
        } else {
            print!(
                "{}",
                vr_dashboard::render_text(&snap, &View::default(), 100, 40)
            );
        }
        return;
    }
    tracing::info!(
        "dashboard for instance {} every {} ms",
        cli.instance,
        cli.interval
    );
    // ratatui::init enters raw mode and the alternate screen and installs a panic hook that
    // restores the terminal before the panic message.
    let mut terminal = ratatui::init();
    let r = run(&mut terminal, &mut col, interval);
    ratatui::restore();
    if let Err(e) = r {
        eprintln!("dashboard: {e}");
        std::process::exit(1);
    }
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    col: &mut Collector,
    interval: Duration,
) -> std::io::Result<()> {
    let mut view = View::default();
    let mut snap = col.collect();
    let mut next = Instant::now() + interval;
    loop {
        terminal.draw(|f| {
            let area = f.area();
            ui::draw(area, f.buffer_mut(), &snap, &view);
        })?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(());
                    }
                    KeyCode::Char('p') => view.paused = !view.paused,
                    KeyCode::Char('?') => view.help = !view.help,
                    KeyCode::Tab | KeyCode::BackTab => view.toggle_focus(),
                    KeyCode::Up | KeyCode::Left => view.step(&snap, -1),
                    KeyCode::Down | KeyCode::Right => view.step(&snap, 1),
                    _ => {}
                },
                _ => {} // Resize: redrawn on the next pass.
            }
            continue;
        }
        next = Instant::now() + interval;
        if !view.paused {
            snap = col.collect();
        }
    }
}
