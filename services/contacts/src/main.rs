fn main() -> anyhow::Result<()> {
    rapport_core::service::main(&rapport_contacts::SERVICE, rapport_contacts::serve)
}
