//! The `utt-collector` command: parses the command line, opens the store and serves.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use utt_collector::config::Config;
use utt_collector::sqlite::SqliteStore;
use utt_collector::{serve, shutdown_signal, Shared};

// The request path allocates many small strings (decoded JSON, events); mimalloc frees them
// from other threads far more cheaply than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: utt-collector [--listen 127.0.0.1:8080] [--db ./utt.db] [--config utt.toml] [--static DIR]...

  --listen ADDR   address to listen on (port 0 picks a free port; the address is printed)
  --db PATH       the SQLite database file (created if missing)
  --config PATH   the TOML configuration (without it: the demo site on http://127.0.0.1:* and http://localhost:*)
  --static DIR    a folder served at / (repeatable; the first folder that has a file wins)
  --backup-to FILE
                  copy the database's main file to FILE (which must not exist), consistent as
                  of one moment, while the collector may be running, then exit. To restore: put
                  the copy at the database's path and run --rebuild-derived
  --rebuild-derived
                  make the derived file (<db>-derived: touches, page counts, identities) again
                  from the stored events, then exit; the collector must be stopped. A derived
                  file already there is kept aside as <db>-derived.replaced-<seconds>

Logs go to stderr; UTT_LOG=error|warn|info|debug sets the level (default info).";

struct Args {
    listen: SocketAddr,
    db: PathBuf,
    config: Option<PathBuf>,
    statics: Vec<PathBuf>,
    rebuild: bool,
    backup_to: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        db: PathBuf::from("utt.db"),
        config: None,
        statics: Vec::new(),
        rebuild: false,
        backup_to: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => out.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--db" => out.db = PathBuf::from(value()?),
            "--config" => out.config = Some(PathBuf::from(value()?)),
            "--static" => out.statics.push(PathBuf::from(value()?)),
            "--rebuild-derived" => out.rebuild = true,
            "--backup-to" => out.backup_to = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("utt-collector: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = match std::env::var("UTT_LOG").as_deref() {
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        _ => LevelFilter::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if let Some(to) = &args.backup_to {
        let bytes = utt_collector::sqlite::backup(&args.db, to)
            .map_err(|e| format!("backing up {}: {e}", args.db.display()))?;
        println!(
            "utt-collector: {} copied to {} ({bytes} bytes); to restore, put it at the database's \
             path and run `utt-collector --db PATH --rebuild-derived`",
            args.db.display(),
            to.display()
        );
        return Ok(());
    }
    if args.rebuild {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let r = utt_collector::sqlite::rebuild_derived(&args.db, now)
            .map_err(|e| format!("rebuilding the derived file of {}: {e}", args.db.display()))?;
        println!(
            "utt-collector: derived {} events of {} into {}: {} touches, {} page-count rows, {} identities",
            r.events,
            args.db.display(),
            utt_collector::sqlite::derived_path(&args.db).display(),
            r.touches,
            r.pages,
            r.identities
        );
        if let Some(kept) = r.kept {
            println!(
                "utt-collector: the derived file that was there is kept as {}",
                kept.display()
            );
        }
        return Ok(());
    }
    let config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            Config::from_toml(&text).map_err(|e| e.to_string())?
        }
        None => Config::demo(),
    };
    for d in &args.statics {
        if !d.is_dir() {
            return Err(format!("--static {}: not a folder", d.display()));
        }
    }
    let store = SqliteStore::open(&args.db).map_err(|e| format!("opening {}: {e}", args.db.display()))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, db = %args.db.display(), sites = config.sites.len(), "utt-collector started");
        // Tests and scripts read the address from this line (it matters with port 0).
        println!("utt-collector listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let state = Shared::new(config, Arc::new(store), args.statics);
        serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })?;
    tracing::info!("stopped");
    Ok(())
}
