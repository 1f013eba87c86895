//! The `higuma` command line: `run`, `config`, and kumactl-like `apply`, `get`, `delete`,
//! `inspect`.
//! This module belongs to the binary crate, the one place where `anyhow` is used.

mod client;
mod dp;
mod https;
mod inspect;
mod resources;
mod run;
mod token;
mod wait;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Default address of the control plane's REST API, as kumactl's.
const DEFAULT_CP_ADDRESS: &str = "http://127.0.0.1:5681";
/// Default address of the DP server, as kuma-dp's.
const DEFAULT_DP_SERVER_ADDRESS: &str = "https://localhost:5678";

#[derive(Debug, Parser)]
#[command(name = "higuma", version, about = "Kuma-compatible service-mesh control plane for Universal deployments")]
struct Cli {
    /// Log level: off, error, warn, info, debug, trace.
    #[arg(long, global = true, env = "KUMA_LOG_LEVEL", default_value = "info")]
    log_level: log::LevelFilter,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Run {
        /// Config file (YAML); built-in defaults when absent. KUMA_* env vars override it.
        #[arg(short = 'c', long = "config-file")]
        config: Option<PathBuf>,
    },
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the Postgres schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Create or update resources from YAML/JSON documents (one PUT each).
    ///
    /// With --wait, then waits until every dataplane the writes affect ACKed the new
    /// config. Exit codes: 0 delivered everywhere, 1 an error (nothing or not everything
    /// applied), 2 some dataplane NACKed, 3 some dataplane is not connected or did not
    /// answer within --timeout.
    Apply {
        /// File to read, or - for standard input.
        #[arg(short = 'f', long = "file")]
        file: String,
        /// Wait until every affected dataplane ACKed the change (progress on a terminal).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 30s, 2m.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        cp: CpOptions,
    },
    /// Show resources.
    Get {
        /// Resource type: meshes, dataplanes, traffic-permissions, ... (singular works too).
        rtype: String,
        /// One resource's name; all of them when absent.
        name: Option<String>,
        #[arg(short = 'm', long = "mesh", default_value = "default")]
        mesh: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        cp: CpOptions,
    },
    /// Run or configure a dataplane's Envoy (kuma-dp's job).
    #[command(subcommand)]
    Dp(DpCommand),
    /// Show the policies matched by a dataplane (or its rules, or the xDS config it was
    /// served), or the dataplanes a policy reaches.
    Inspect {
        /// `dataplane`, or a policy type (traffic-permissions, meshtrafficpermission, ...).
        rtype: String,
        name: String,
        #[arg(short = 'm', long = "mesh", default_value = "default")]
        mesh: String,
        /// For `inspect dataplane`: policies (default), rules, or xds (alias config-dump).
        #[arg(long = "type", value_enum)]
        what: Option<inspect::InspectType>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        cp: CpOptions,
    },
    /// Delete a resource.
    Delete {
        rtype: String,
        name: String,
        #[arg(short = 'm', long = "mesh", default_value = "default")]
        mesh: String,
        #[command(flatten)]
        cp: CpOptions,
    },
    /// Generate tokens (kumactl generate).
    #[command(subcommand)]
    Generate(GenerateCommand),
}

/// Where the control plane's API is and how to authenticate (kumactl's control-plane
/// settings, as flags).
#[derive(Debug, clap::Args)]
struct CpOptions {
    /// `http://host:5681`, or `https://host:5682` for TLS.
    #[arg(long, default_value = DEFAULT_CP_ADDRESS)]
    cp_address: String,
    /// A user token (`higuma generate user-token`, or the admin token in the GlobalSecret
    /// admin-user-token); sent as `Authorization: Bearer`. Not needed from the CP's own
    /// host while apiServer.authn.localhostIsAdmin is on.
    #[arg(long, env = "KUMA_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// CA certificate (PEM) to verify an https:// control plane with; the system's roots
    /// otherwise. For a generated certificate: higuma-api-ca.crt in the CP's general.workDir.
    #[arg(long)]
    ca_cert_file: Option<PathBuf>,
}

impl CpOptions {
    fn client(&self) -> anyhow::Result<client::Client> {
        client::Client::connect(&client::Connection {
            cp_address: self.cp_address.clone(),
            auth_token: self.auth_token.clone(),
            ca_cert_file: self.ca_cert_file.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// A user token for the API (admins only): prints the token.
    UserToken {
        /// The user's name (the token's Name claim).
        #[arg(long)]
        name: String,
        /// A group the user is in; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// How long the token is valid, e.g. 24h, 30m.
        #[arg(long, default_value = "24h")]
        valid_for: String,
        #[command(flatten)]
        cp: CpOptions,
    },
    /// A dataplane token (POST /tokens/dataplane), printed to standard output.
    DataplaneToken {
        #[arg(long)]
        mesh: String,
        /// Bind the token to this dataplane name (any dataplane of the mesh when absent).
        #[arg(long)]
        name: Option<String>,
        /// Bind the token to tag values: `--tag kuma.io/service=web,web-api` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Proxy type; only `dataplane`.
        #[arg(long = "type")]
        proxy_type: Option<String>,
        /// How long the token is valid (e.g. 24h); Kuma's default is ten years.
        #[arg(long)]
        valid_for: Option<String>,
        #[command(flatten)]
        cp: CpOptions,
    },
}

#[derive(Debug, clap::Args)]
struct DpOptions {
    #[arg(long)]
    mesh: String,
    #[arg(long)]
    name: String,
    /// The DP server (`https://host:5678`; `http://` if it serves plaintext). Several
    /// control-plane instances comma-separated: the bootstrap comes from the first that
    /// answers and Envoy fails over between all of them (they need one shared certificate).
    #[arg(long, default_value = DEFAULT_DP_SERVER_ADDRESS)]
    cp_address: String,
    /// CA certificate (PEM) to verify the DP server with; the control plane writes its
    /// generated one to `<general.workDir>/kuma-cp-ca.crt`.
    #[arg(long)]
    ca_cert_file: Option<PathBuf>,
    /// File holding the dataplane token (`higuma generate dataplane-token`).
    #[arg(long, alias = "dataplane-token-file")]
    token_file: Option<PathBuf>,
    /// The REST API, for --dataplane-file.
    #[arg(long, default_value = DEFAULT_CP_ADDRESS)]
    api_address: String,
    /// Create or update the Dataplane from this YAML/JSON file first (through the API).
    #[arg(long)]
    dataplane_file: Option<PathBuf>,
    /// Envoy's admin port (default: the Dataplane's networking.admin.port, else 9901).
    #[arg(long)]
    admin_port: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum DpCommand {
    /// Write the dataplane's Envoy bootstrap (YAML).
    Bootstrap {
        #[command(flatten)]
        opts: DpOptions,
        /// Output file; standard output when absent.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Fetch the bootstrap and run Envoy with it, forwarding SIGINT/SIGTERM.
    Run {
        #[command(flatten)]
        opts: DpOptions,
        /// Envoy binary.
        #[arg(long, default_value = "envoy")]
        envoy: String,
        /// Extra arguments for Envoy, after `--`.
        #[arg(last = true)]
        envoy_args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Apply pending migrations to the database in store.postgres (idempotent).
    Up {
        #[arg(short = 'c', long = "config-file")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the config (file + env); exit 1 on an error.
    Check {
        #[arg(short = 'c', long = "config-file")]
        config: Option<PathBuf>,
    },
    /// Print the full default config as YAML.
    Defaults,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

fn dp_args(o: DpOptions) -> (client::Client, dp::DpArgs) {
    let client = client::Client::new(&o.api_address);
    let args = dp::DpArgs {
        mesh: o.mesh,
        name: o.name,
        cp_address: o.cp_address,
        ca_cert_file: o.ca_cert_file,
        token_file: o.token_file,
        dataplane_file: o.dataplane_file,
        admin_port: o.admin_port,
    };
    (client, args)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The logger passes everything; the level in force is the global max level, which a
    // reload can change (general.logLevel).
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    log::set_max_level(cli.log_level);
    higuma::daemon::set_cli_log_level(cli.log_level);
    let result = match cli.command {
        Command::Run { config } => run::run(config.as_deref()),
        Command::Config(ConfigCommand::Check { config }) => run::check(config.as_deref()),
        Command::Migrate(MigrateCommand::Up { config }) => run::migrate_up(config.as_deref()),
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", higuma::config::Config::default().to_yaml());
            Ok(())
        }
        Command::Apply { file, wait, timeout, cp } => {
            cp.client().and_then(|c| resources::apply(&c, &file, wait.then_some(timeout)))
        }
        Command::Get { rtype, name, mesh, output, cp } => {
            cp.client().and_then(|c| resources::get(&c, &rtype, name.as_deref(), &mesh, output))
        }
        Command::Generate(GenerateCommand::UserToken { name, groups, valid_for, cp }) => {
            cp.client().and_then(|c| resources::generate_user_token(&c, &name, &groups, &valid_for))
        }
        Command::Dp(DpCommand::Bootstrap { opts, output }) => {
            let (client, args) = dp_args(opts);
            dp::bootstrap(&client, &args, output.as_deref())
        }
        Command::Dp(DpCommand::Run { opts, envoy, envoy_args }) => {
            let (client, args) = dp_args(opts);
            dp::run(&client, &args, &envoy, &envoy_args)
        }
        Command::Inspect { rtype, name, mesh, what, output, cp } => cp.client().and_then(|c| {
            inspect::inspect(&c, &inspect::InspectArgs { rtype: &rtype, name: &name, mesh: &mesh, what, output })
        }),
        Command::Generate(GenerateCommand::DataplaneToken { mesh, name, tags, proxy_type, valid_for, cp }) => {
            let req = token::DataplaneTokenRequest { mesh, name, tags, proxy_type, valid_for };
            cp.client().and_then(|c| token::generate_dataplane_token(&c, &req))
        }
        Command::Delete { rtype, name, mesh, cp } => {
            cp.client().and_then(|c| resources::delete(&c, &rtype, &name, &mesh))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = std::io::stdout().flush();
            eprintln!("Error: {err}");
            if let Some(failed) = err.downcast_ref::<wait::WaitFailed>() {
                return ExitCode::from(failed.code);
            }
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
