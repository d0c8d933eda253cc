//! `rapportctl identity`: the keys that sign internal credentials. Each
//! service, the gateway and each operator tool has one; the trust list
//! (`RAPPORT_TRUSTED_ISSUERS`) names their public halves.

use std::io::Read as _;

use anyhow::Context as _;
use clap::Subcommand;
use rapport_core::credential::Identity;

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Print a new private key (PKCS#8 PEM), for RAPPORT_IDENTITY_KEY.
    New,
    /// Print the public key of a private key (read from FILE, or standard
    /// input), as the trust list names it.
    PublicKey {
        /// The private key's file; standard input when not given.
        file: Option<std::path::PathBuf>,
    },
}

pub fn run(command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::New => {
            print!("{}", Identity::generate_key()?);
        }
        IdentityCommand::PublicKey { file } => {
            let pem = match file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let mut pem = String::new();
                    std::io::stdin().read_to_string(&mut pem)?;
                    pem
                }
            };
            println!("{}", Identity::from_pem("any", &pem)?.public_key());
        }
    }
    Ok(())
}
