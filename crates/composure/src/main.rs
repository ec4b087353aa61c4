//! `composure`: the command-line interface and the daemon, in one binary.

#[macro_use]
mod output;
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Config(args) => commands::config::run(&cli.global.then(&args.global), args),
        Command::Completion(args) => {
            // From the clap definitions, so the script never falls behind the verbs.
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "composure", &mut script);
            out_raw!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => commands::up::run(&cli.global.then(&args.global), args).await,
        Command::Down(args) => commands::down::run(&cli.global.then(&args.global), args).await,
        Command::Ps(args) => commands::ps::run(&cli.global.then(&args.global), args).await,
        Command::Logs(args) => commands::logs::run(&cli.global, args).await,
        Command::Scale(args) => commands::scale::scale(&cli.global.then(&args.global), args).await,
        Command::Restart(args) => {
            commands::scale::restart(&cli.global.then(&args.global), args).await
        }
        Command::Events(args) => commands::events::run(&cli.global.then(&args.global), args).await,
        Command::Rollout(args) => commands::rollout::run(&cli.global, args).await,
        Command::Node(args) => commands::node::run(&cli.global, args).await,
        Command::Stop(args) => commands::scale::stop(&cli.global.then(&args.global), args).await,
        Command::Start(args) => commands::scale::start(&cli.global.then(&args.global), args).await,
        Command::Top(args) => commands::replicas::top(&cli.global.then(&args.global), args).await,
        Command::Images(args) => {
            commands::replicas::images(&cli.global.then(&args.global), args).await
        }
        Command::Kill(args) => commands::replicas::kill(&cli.global.then(&args.global), args).await,
        Command::Wait(args) => commands::replicas::wait(&cli.global.then(&args.global), args).await,
        Command::Exec(args) => commands::exec::run(&cli.global.then(&args.global), args).await,
        Command::Port(args) => commands::ps::port(&cli.global.then(&args.global), args).await,
        Command::Pull(args) => commands::images::pull(&cli.global.then(&args.global), args).await,
        Command::Build(args) => commands::images::build(&cli.global.then(&args.global), args).await,
        Command::Ls(args) => commands::ls::run(&cli.global.then(&args.global), args).await,
        Command::Version(args) => {
            commands::version::run(&cli.global.then(&args.global), args).await
        }
        Command::Gpus(args) => commands::gpus::run(&cli.global.then(&args.global), args).await,
        Command::Daemon(args) => commands::daemon::run(&cli.global.then(&args.global), args).await,
        Command::Vip(args) => commands::vip::run(args).await,
        Command::Ingress(args) => commands::ingress::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(output::EXIT_FAILURE)
        }
    }
}
