//! Prints the PegasusTableRoute CRD as YAML; `crds/pegasustableroutes.yaml` is its output.

fn main() -> anyhow::Result<()> {
    print!("{}", metaproxy_operator::crd::crd_yaml()?);
    Ok(())
}
