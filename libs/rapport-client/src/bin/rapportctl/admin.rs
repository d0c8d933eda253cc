//! `rapportctl tenants` and `rapportctl keys`: the operator's commands.

use clap::Subcommand;
use rapport_client::RapportClient;

use crate::short_name;

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant and print its id.
    Create {
        name: String,
        /// Calls per second through one gateway replica (0: the default).
        #[arg(long, default_value_t = 0)]
        rate_per_second: i32,
        #[arg(long, default_value_t = 0)]
        burst: i32,
    },
    /// Show a tenant.
    Get { id: String },
    /// List tenants.
    List,
    /// Suspend a tenant: its keys stop working within a second.
    Suspend { id: String },
    /// Lift a suspension.
    Resume { id: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key; its secret is printed once.
    Create {
        tenant_id: String,
        /// Such as contacts:write (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's keys.
    List { tenant_id: String },
    /// Revoke a key: it stops working within a second.
    Revoke { id: String },
}

pub async fn tenants(client: &RapportClient, command: TenantsCommand) -> anyhow::Result<()> {
    use rapport_proto::gateway::v1::*;
    let mut admin = client.gateway_admin();
    let tenant = match command {
        TenantsCommand::Create {
            name,
            rate_per_second,
            burst,
        } => {
            let tenant = Tenant {
                display_name: name,
                rate_limit_per_second: rate_per_second,
                rate_limit_burst: burst,
                ..Default::default()
            };
            admin
                .create_tenant(CreateTenantRequest {
                    tenant: Some(tenant),
                })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Get { id } => {
            admin
                .get_tenant(GetTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::List => {
            let mut page_token = String::new();
            loop {
                let page = admin
                    .list_tenants(ListTenantsRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for tenant in &page.tenants {
                    println!(
                        "{}  {:<10} {}",
                        tenant.id,
                        tenant_state(tenant.state),
                        tenant.display_name
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        TenantsCommand::Suspend { id } => {
            admin
                .suspend_tenant(SuspendTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Resume { id } => {
            admin
                .resume_tenant(ResumeTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
    };
    if let Some(tenant) = tenant {
        println!("id         {}", tenant.id);
        println!("name       {}", tenant.display_name);
        println!("state      {}", tenant_state(tenant.state));
    }
    Ok(())
}

fn tenant_state(state: i32) -> String {
    rapport_proto::gateway::v1::TenantState::try_from(state).map_or_else(
        |_| state.to_string(),
        |s| short_name(s.as_str_name(), "TENANT_STATE_"),
    )
}

pub async fn keys(client: &RapportClient, command: KeysCommand) -> anyhow::Result<()> {
    use rapport_proto::gateway::v1::*;
    let mut admin = client.gateway_admin();
    match command {
        KeysCommand::Create {
            tenant_id,
            scopes,
            name,
        } => {
            let request = CreateApiKeyRequest {
                tenant_id,
                display_name: name,
                scopes,
                expire_time: None,
            };
            let created = admin.create_api_key(request).await?.into_inner();
            let key = created.api_key.unwrap_or_default();
            println!("id         {}", key.id);
            println!("prefix     {}", key.prefix);
            println!("scopes     {}", key.scopes.join(" "));
            println!("secret     {}", created.secret);
            println!("(the secret is shown once: keep it now)");
        }
        KeysCommand::List { tenant_id } => {
            let page = admin
                .list_api_keys(ListApiKeysRequest {
                    tenant_id,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for key in &page.api_keys {
                let state = if key.revoke_time.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}  {}  {:<8} {}  {}",
                    key.id,
                    key.prefix,
                    state,
                    key.scopes.join(" "),
                    key.display_name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = admin
                .revoke_api_key(RevokeApiKeyRequest { id })
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            println!("revoked {} ({})", key.id, key.prefix);
        }
    }
    Ok(())
}
