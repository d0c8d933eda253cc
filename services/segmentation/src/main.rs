fn main() -> anyhow::Result<()> {
    rapport_core::service::main(&rapport_segmentation::SERVICE, rapport_segmentation::serve)
}
