fn main() -> anyhow::Result<()> {
    rapport_core::service::main(&rapport_gateway::SERVICE, rapport_gateway::serve)
}
