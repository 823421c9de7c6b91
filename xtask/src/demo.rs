//! `cargo xtask demo`: builds the tag and the collector, then serves the demo shop, the partner
//! debug page and the site-owner report from the collector until Ctrl-C.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};

use crate::{build, cargo, dist_dir, proc, root, setup, target_dir, Result};

/// The address the demo prefers; when it is taken, the collector picks a free port instead.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The partner link the banner offers, so a first-time user can click through the journey.
const PARTNER_LINK: &str = "/?irclickid=DEMO-PARTNER-1&utm_source=partner&utm_medium=affiliate";

/// Builds the tag into `dist/` and the collector's debug binary (what the demo and the e2e
/// tests run).
pub fn build_tag_and_collector() -> Result {
    build::run()?;
    proc::run(Command::new(cargo()).current_dir(root()).args([
        "build",
        "-p",
        "utt-collector",
        "--bin",
        "utt-collector",
    ]))
}

/// Builds everything and runs the collector in the foreground. `args`: `[--listen ADDR] [--fresh]`.
pub fn run(args: &[String]) -> Result {
    let mut listen: Option<SocketAddr> = None;
    let mut fresh = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => {
                let value = it.next().ok_or("--listen needs an address, e.g. 127.0.0.1:8080")?;
                listen = Some(value.parse().map_err(|e| format!("--listen {value}: {e}"))?);
            }
            "--fresh" => fresh = true,
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (expected --listen ADDR or --fresh)"
                ))
            }
        }
    }

    // A fresh clone gets from nothing to a running demo with this one command.
    setup::build_tools()?;
    build_tag_and_collector()?;

    let dir = target_dir().join("demo");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = dir.join("utt.db");
    if fresh {
        // The WAL and shared-memory files, and the derived tables' file with its own, belong to
        // the database: a fresh start removes all six.
        for suffix in ["", "-wal", "-shm", "-derived", "-derived-wal", "-derived-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }

    let listen = listen.unwrap_or_else(|| {
        let preferred: SocketAddr = DEFAULT_LISTEN.parse().expect("unreachable: a valid constant address");
        // Probing and releasing the port leaves a tiny race, which costs at most a retry by hand;
        // port 0 when 8080 is busy keeps a second demo (or another server) from stopping this one.
        if TcpListener::bind(preferred).is_ok() {
            preferred
        } else {
            println!("demo: {DEFAULT_LISTEN} is in use, so the collector picks a free port");
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    });

    let binary = target_dir()
        .join("debug")
        .join(format!("utt-collector{}", std::env::consts::EXE_SUFFIX));
    let mut collector = Command::new(&binary);
    collector
        .current_dir(root())
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--db")
        .arg(&db)
        // The built tag first (`/utt.js`, `/utt_bg.wasm`), then the pages.
        .arg("--static")
        .arg(dist_dir())
        .arg("--static")
        .arg(root().join("www"))
        .stdout(Stdio::piped());
    println!(
        "$ {} --listen {listen} --db {} --static dist --static www",
        binary.display(),
        db.display()
    );
    let mut child = collector
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;

    // The collector prints the address it bound (it matters with port 0); everything after
    // that line is passed through.
    let stdout = child.stdout.take().expect("unreachable: stdout was piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.map_err(|e| format!("reading the collector's output: {e}"))?;
        if let Some(url) = line.split("listening on ").nth(1) {
            base = Some(url.trim().trim_end_matches('/').to_string());
            break;
        }
        println!("{line}");
    }
    let Some(base) = base else {
        let status = child.wait().map_err(|e| e.to_string())?;
        return Err(format!(
            "the collector stopped before listening ({status}); see its log above"
        ));
    };

    let shown_db = db.strip_prefix(root()).unwrap_or(&db).display().to_string();
    let banner = [
        String::new(),
        "utt demo is running. Ctrl-C stops it.".into(),
        String::new(),
        format!("  1. Click a partner's tracking link:  {base}{PARTNER_LINK}"),
        "     (accept the cookie banner: the shop asks for consent before the tag stores anything)".into(),
        format!("  2. Browse and buy in the shop:       {base}/"),
        "     promo codes: SPRING10 (partner influencer-anna), WELCOME5 (partner newsletter-partner)".into(),
        format!("  3. See what the tag captured:        {base}/debug.html"),
        format!("  4. See the partner credit:           {base}/report.html?site=demo (the demo site has no read key)"),
        String::new(),
        format!("  collector API: {base}/v1/conversions?site=demo  {base}/v1/clicks/DEMO-PARTNER-1  {base}/metrics"),
        format!("  database:      {shown_db} (kept between runs; `cargo xtask demo --fresh` starts empty)"),
        String::new(),
    ];
    println!("{}", banner.join("\n"));
    let _ = std::io::stdout().flush();
    for line in lines {
        match line {
            Ok(line) => println!("{line}"),
            Err(_) => break,
        }
    }
    // Ctrl-C reaches the collector as well as this process (same process group): the collector
    // shuts down gracefully, flushing what it acknowledged, even though cargo and xtask stop first.
    let status = child.wait().map_err(|e| format!("waiting for the collector: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the collector exited with {status}"))
    }
}
