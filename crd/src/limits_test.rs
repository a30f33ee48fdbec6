//! The CRD states the subject limit in its schema (maxItems) and in a CEL rule's text; both must
//! say [`crate::MAX_SUBJECTS`], the one definition the operator uses.

use kube::CustomResourceExt;

use crate::{MAX_SUBJECTS, TenantIdentity};

#[test]
fn the_crd_states_the_one_subject_limit() {
    let crd = serde_json::to_value(TenantIdentity::crd()).expect("CRD serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["virtualCluster"]["properties"]["serviceAccounts"]["maxItems"],
        serde_json::json!(MAX_SUBJECTS)
    );
    let rules = spec["x-kubernetes-validations"]
        .as_array()
        .expect("spec has CEL rules");
    let limit = rules
        .iter()
        .find(|r| r["fieldPath"] == ".virtualCluster.serviceAccounts")
        .expect("the subject-limit rule");
    assert!(
        limit["rule"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("<= {MAX_SUBJECTS}"))),
        "{limit}"
    );
    assert!(
        limit["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("at most {MAX_SUBJECTS} subjects"))),
        "{limit}"
    );
}
