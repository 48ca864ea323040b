//! The command line: `bosun validate`, `crds`, `run`, `plan`, `status`, `promote`, `abort`, `retry`.

pub mod ops;
mod run;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Bosun: safe application upgrades driven from git.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check ManagedApplication and Bestie definitions in files or directories of YAML.
    ///
    /// Exit code 0: every definition is valid; 1: some are not; 2: the command could not run.
    Validate {
        /// Files or directories (searched for *.yaml and *.yml, hidden directories skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How to print the result.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Also list the documents of other kinds that were passed over.
        #[arg(long, short)]
        verbose: bool,
        /// Largest file read, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        max_file_bytes: usize,
    },
    /// Watch git repositories (or local directories) and make the cluster match them.
    Run(Box<run::RunArgs>),
    /// Show what the current git revision would change in the cluster, changing nothing.
    ///
    /// Takes the same source flags as `run`. Exit code 0: the plan is shown; 1: some definitions are
    /// invalid; 2: the source or the cluster could not be read.
    Plan(Box<run::RunArgs>),
    /// Every ManagedApplication: phase, current and target version, canary step and weight, last transition.
    Status {
        /// The namespace (default: the kubeconfig's).
        #[arg(long, short)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        /// Keep watching and redraw on every change.
        #[arg(long, short)]
        watch: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Promote the canary step (or blue-green switch) an app is waiting at; with --now, start an
    /// upgrade that waits for its upgrade window at once (an emergency; recorded in status, the Event,
    /// the note and the pull request comment).
    Promote {
        #[command(flatten)]
        app: AppArgs,
        /// Start (and go on with) the upgrade now, outside its upgrade windows.
        #[arg(long)]
        now: bool,
    },
    /// Abort an app's running upgrade: it rolls back to the last healthy version.
    Abort(AppArgs),
    /// Try an app's failed version again.
    Retry(AppArgs),
    /// Print the CustomResourceDefinitions, or write or check them in a directory.
    Crds {
        /// Write one file per CRD into this directory (as deploy/crds/ holds them).
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Exit 1 when the files in this directory differ from what this build generates.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

/// Names one ManagedApplication.
#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// The ManagedApplication's name.
    pub app: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Runs a parsed command line and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate {
            paths,
            output,
            verbose,
            max_file_bytes,
        } => validate::run(&paths, output, verbose, max_file_bytes),
        Command::Crds { write, check } => crds(write, check),
        Command::Run(args) => run_daemon(&args),
        Command::Plan(args) => {
            let config = match run::config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("bosun plan: {e:#}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = bound_git_sockets(&config) {
                eprintln!("bosun plan: {e:#}");
                return ExitCode::from(2);
            }
            block_on(ops::plan(config))
        }
        Command::Status {
            namespace,
            all_namespaces,
            watch,
            json,
        } => block_on(ops::status(
            namespace.as_deref(),
            all_namespaces,
            watch,
            json,
        )),
        Command::Promote { app: a, now } => block_on(ops::request(
            if now {
                ops::Request::PromoteNow
            } else {
                ops::Request::Promote
            },
            &a.app,
            a.namespace.as_deref(),
        )),
        Command::Abort(a) => block_on(ops::request(
            ops::Request::Abort,
            &a.app,
            a.namespace.as_deref(),
        )),
        Command::Retry(a) => block_on(ops::request(
            ops::Request::Retry,
            &a.app,
            a.namespace.as_deref(),
        )),
    }
}

fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime starts")
        .block_on(f)
}

/// Bounds libgit2's sockets by the longest fetch timeout of the sources (each source's own total
/// bound stays its watchdog's); before the runtime starts, while this is the only thread.
fn bound_git_sockets(config: &crate::config::RunConfig) -> anyhow::Result<()> {
    let longest = config
        .sources
        .iter()
        .filter_map(|s| match &s.origin {
            crate::config::Origin::Git(spec) => Some(spec.limits.fetch_timeout),
            crate::config::Origin::Dir(_) => None,
        })
        .max();
    if let Some(timeout) = longest {
        crate::git::bound_sockets(timeout)
            .map_err(|e| anyhow::anyhow!("bounding git's sockets: {}", e.message()))?;
    }
    Ok(())
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BOSUN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a human at a terminal: a log file, a pipe or a container log gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("BOSUN_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run_daemon(args: &run::RunArgs) -> ExitCode {
    init_logging();
    let config = match run::config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun run: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = bound_git_sockets(&config) {
        eprintln!("bosun run: {e:#}");
        return ExitCode::from(2);
    }
    let yaml = config.sources.iter().filter_map(|s| match &s.origin {
        crate::config::Origin::Git(spec) => Some(spec.limits.max_total_bytes),
        crate::config::Origin::Dir(_) => None,
    });
    if let Err(e) = crate::memory::check(crate::memory::limit(), yaml) {
        eprintln!("bosun run: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(crate::run::run(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bosun run: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn crds(write: Option<PathBuf>, check: Option<PathBuf>) -> ExitCode {
    use bosun_core::model::Kind;
    let result: anyhow::Result<bool> = (|| {
        if let Some(dir) = write {
            std::fs::create_dir_all(&dir)?;
            for kind in Kind::ALL {
                let path = dir.join(crate::crds::file_name(kind));
                std::fs::write(&path, crate::crds::render(kind)?)?;
                println!("wrote {}", path.display());
            }
            return Ok(true);
        }
        if let Some(dir) = check {
            let mut fresh = true;
            for kind in Kind::ALL {
                let path = dir.join(crate::crds::file_name(kind));
                let want = crate::crds::render(kind)?;
                if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
                    eprintln!(
                        "{} is stale: run `cargo run -- crds --write {}`",
                        path.display(),
                        dir.display()
                    );
                    fresh = false;
                }
            }
            return Ok(fresh);
        }
        print!("{}", crate::crds::render_all()?);
        Ok(true)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bosun crds: {e:#}");
            ExitCode::from(2)
        }
    }
}
