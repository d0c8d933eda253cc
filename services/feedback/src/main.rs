fn main() -> anyhow::Result<()> {
    rapport_core::service::main(&rapport_feedback::SERVICE, rapport_feedback::serve)
}
