//! The `utt-collector` command: reads the command line (or the environment), opens the store
//! and serves.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};
use tracing::level_filters::LevelFilter;
use utt_collector::config::Config;
use utt_collector::store::postgres::{self, PostgresStore};
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::Store;
use utt_collector::{serve, shutdown_signal, Shared};

// The request path allocates many small strings (decoded JSON, events); mimalloc frees them
// from other threads far more cheaply than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The utt collector: receives the tag's event batches, stores them durably in SQLite or
/// PostgreSQL and attributes conversions to partners when they are read.
///
/// Every option can be given as an environment variable instead (named in brackets), as
/// container deployments do; the command line wins. Logs go to stderr; on start the listening
/// address is printed on stdout. SIGTERM or Ctrl-C stops it gracefully.
#[derive(Debug, Parser)]
#[command(name = "utt-collector", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed)
    #[arg(long, env = "UTT_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The database: a SQLite file (created if missing), or a PostgreSQL URL
    /// (postgres://user[:password]@host[:port]/dbname) that any number of collectors share
    #[arg(long, env = "UTT_DB", value_name = "PATH|URL", default_value = "utt.db")]
    db: String,
    /// The TOML configuration (without it: the demo site on http://127.0.0.1:* and
    /// http://localhost:*)
    #[arg(long, env = "UTT_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// A folder served at / (repeatable, or several separated by commas; the first folder that
    /// has the file wins)
    #[arg(long = "static", env = "UTT_STATIC", value_name = "DIR", value_delimiter = ',')]
    statics: Vec<PathBuf>,
    /// Copy the database's main file to FILE, then exit
    ///
    /// FILE must not exist. The copy is consistent as of one moment and may be taken while the
    /// collector runs. To restore: put the copy at the database's path and run
    /// --rebuild-derived.
    #[arg(long, env = "UTT_BACKUP_TO", value_name = "FILE", conflicts_with = "rebuild_derived")]
    backup_to: Option<PathBuf>,
    /// Make the derived file (<db>-derived) again from the stored events, then exit
    ///
    /// The derived file holds touches, page counts and identities. The collector must be
    /// stopped. A derived file already there is kept aside as
    /// <db>-derived.replaced-<seconds>.
    #[arg(long, env = "UTT_REBUILD_DERIVED", value_parser = BoolishValueParser::new())]
    rebuild_derived: bool,
    /// Copy every event of the SQLite database FILE into the PostgreSQL database --db, then exit
    ///
    /// Conversions and derived rows are made again from the events. Run it again after the
    /// last SQLite collector stopped: events already copied are counted as duplicates, never
    /// stored twice.
    #[arg(
        long,
        env = "UTT_IMPORT_SQLITE",
        value_name = "FILE",
        conflicts_with_all = ["rebuild_derived", "backup_to"]
    )]
    import_sqlite: Option<PathBuf>,
    /// The lowest level logged
    #[arg(long, env = "UTT_LOG", value_name = "LEVEL", value_enum, default_value_t = Level::Info)]
    log_level: Level,
    /// How log lines are written: text for people (coloured only when stderr is a terminal), or
    /// json, one object a line, for log shippers
    #[arg(long, env = "UTT_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// A log level.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.log_level {
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
        Level::Trace => LevelFilter::TRACE,
    };
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logs.with_ansi(colour).init();
        }
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let pg_url = postgres::is_url(&args.db).then(|| args.db.clone());
    let db = PathBuf::from(&args.db);
    let shown = match &pg_url {
        Some(url) => postgres::redact(url),
        None => db.display().to_string(),
    };
    if let Some(from) = &args.import_sqlite {
        let Some(url) = &pg_url else {
            return Err("--import-sqlite copies into PostgreSQL: --db must be a postgres:// URL".into());
        };
        let store = PostgresStore::open(url).map_err(|e| format!("opening {shown}: {e}"))?;
        let r = utt_collector::store::import::import_sqlite(from, &store)
            .map_err(|e| format!("importing {} into {shown}: {e}", from.display()))?;
        println!(
            "utt-collector: read {} events of {}: {} stored in {shown}, {} already there; \
             {} server confirmations ({} new), {} adjustments ({} new)",
            r.read,
            from.display(),
            r.stored,
            r.duplicates,
            r.confirmations.0,
            r.confirmations.1,
            r.adjustments.0,
            r.adjustments.1
        );
        return Ok(());
    }
    if let Some(to) = &args.backup_to {
        if pg_url.is_some() {
            return Err(
                "--backup-to copies a SQLite file: back a PostgreSQL database up with pg_dump or a base backup".into(),
            );
        }
        let bytes = utt_collector::store::sqlite::backup(&db, to).map_err(|e| format!("backing up {shown}: {e}"))?;
        println!(
            "utt-collector: {shown} copied to {} ({bytes} bytes); to restore, put it at the database's \
             path and run `utt-collector --db PATH --rebuild-derived`",
            to.display()
        );
        return Ok(());
    }
    if args.rebuild_derived {
        if let Some(url) = &pg_url {
            let store = PostgresStore::open(url).map_err(|e| format!("opening {shown}: {e}"))?;
            let r = store
                .rebuild_derived()
                .map_err(|e| format!("rebuilding the derived tables of {shown}: {e}"))?;
            println!(
                "utt-collector: derived {} events of {shown}: {} touches, {} page-count rows, {} identities",
                r.events, r.touches, r.pages, r.identities
            );
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let r = utt_collector::store::sqlite::rebuild_derived(&db, now)
            .map_err(|e| format!("rebuilding the derived file of {shown}: {e}"))?;
        println!(
            "utt-collector: derived {} events of {shown} into {}: {} touches, {} page-count rows, {} identities",
            r.events,
            utt_collector::store::sqlite::derived_path(&db).display(),
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
    let store: Arc<dyn Store> = match &pg_url {
        Some(url) => Arc::new(PostgresStore::open(url).map_err(|e| format!("opening {shown}: {e}"))?),
        None => Arc::new(SqliteStore::open(&db).map_err(|e| format!("opening {shown}: {e}"))?),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, db = %shown, sites = config.sites.len(), "utt-collector started");
        // Tests and scripts read the address from this line (it matters with port 0).
        println!("utt-collector listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let state = Shared::new(config, store, args.statics);
        serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("utt-collector").chain(args.iter().copied()))
    }

    #[test]
    fn flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(a.db, "utt.db");
        assert_eq!((a.config, a.statics.len(), a.backup_to), (None, 0, None));
        assert!(!a.rebuild_derived);
        assert_eq!((a.log_level, a.log_format), (Level::Info, LogFormat::Text));

        let a = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--db",
            "/data/utt.db",
            "--config",
            "utt.toml",
            "--static",
            "dist",
            "--static",
            "www,more",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(a.listen, SocketAddr::from(([0, 0, 0, 0], 0)));
        assert_eq!(a.db, "/data/utt.db");
        assert_eq!(a.config, Some(PathBuf::from("utt.toml")));
        assert_eq!(a.statics, ["dist", "www", "more"].map(PathBuf::from));
        assert_eq!((a.log_level, a.log_format), (Level::Debug, LogFormat::Json));
        assert!(parse(&["--rebuild-derived"]).unwrap().rebuild_derived);
        assert_eq!(
            parse(&["--backup-to", "copy.db"]).unwrap().backup_to,
            Some(PathBuf::from("copy.db"))
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let cases: [(&[&str], &str); 7] = [
            (&["--listen", "localhost"], "invalid socket address"),
            (&["--listen"], "a value is required"),
            (&["--frobnicate"], "unexpected argument '--frobnicate'"),
            (&["--log-level", "loud"], "invalid value 'loud'"),
            (&["--log-format", "xml"], "invalid value 'xml'"),
            (&["--backup-to", "x", "--rebuild-derived"], "cannot be used with"),
            (&["--import-sqlite", "x", "--rebuild-derived"], "cannot be used with"),
        ];
        for (args, want) in cases {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?} gave {e}");
        }
    }

    #[test]
    fn every_option_has_an_environment_variable_and_help() {
        use clap::CommandFactory;
        let cmd = Args::command();
        cmd.clone().debug_assert();
        for arg in cmd
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
        {
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert!(env.starts_with("UTT_"), "--{:?} has no UTT_ variable", arg.get_long());
            assert!(arg.get_help().is_some(), "--{:?} has no help", arg.get_long());
        }
    }
}
