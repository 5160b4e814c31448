use super::*;

#[test]
fn parse_sums_and_weights() {
    let spec = LossSpec::parse(
        "dice+bce",
        &[1.0, 0.5],
        &LossParams::default(),
        false,
        Reduction::Batch,
    )
    .unwrap();
    assert_eq!(spec.name(), "dice+bce");
    assert_eq!(spec.terms[1].weight, 0.5);
    assert!(LossSpec::parse(
        "dice+bce",
        &[1.0],
        &LossParams::default(),
        false,
        Reduction::Batch
    )
    .is_err());
    assert!(LossSpec::parse("dyce", &[], &LossParams::default(), false, Reduction::Batch).is_err());
}

#[test]
fn negative_smooth_is_rejected() {
    let params = LossParams {
        smooth: Some(-1.0),
        ..Default::default()
    };
    assert!(LossKind::from_name("tversky", &params).is_err());
    assert!(LossKind::from_name("dice", &params).is_err());
    let params = LossParams {
        gamma: Some(0.0),
        ..Default::default()
    };
    assert!(LossKind::from_name("focal-tversky", &params).is_err());
}

#[test]
fn spec_serde_round_trip() {
    let spec = LossSpec::parse(
        "tversky+focal",
        &[2.0, 1.0],
        &LossParams::default(),
        true,
        Reduction::PerImage,
    )
    .unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    let back: LossSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn input_checks_name_the_problem() {
    let shape = [1, 1, 2, 2];
    let t = [0.0, 1.0, 1.0, 0.0];
    assert!(check_inputs(&[0.1, 0.2, 0.3, 0.4], &shape, &t, &shape, false).is_ok());
    assert!(matches!(
        check_inputs(&[0.1, 1.2, 0.3, 0.4], &shape, &t, &shape, false),
        Err(InputError::PredOutOfRange { index: 1, .. })
    ));
    assert!(check_inputs(&[0.1, 1.2, 0.3, 0.4], &shape, &t, &shape, true).is_ok());
    assert!(matches!(
        check_inputs(&[0.1, f32::NAN, 0.3, 0.4], &shape, &t, &shape, true),
        Err(InputError::PredNotFinite { index: 1, .. })
    ));
    assert!(matches!(
        check_inputs(&[0.1; 4], &shape, &[0.0, 0.5, 1.0, 0.0], &shape, false),
        Err(InputError::TargetNotBinary { index: 1, .. })
    ));
    assert!(matches!(
        check_inputs(&[0.1; 4], &shape, &t, &[1, 1, 4, 1], false),
        Err(InputError::ShapeMismatch { .. })
    ));
}

#[test]
fn every_name_and_alias_builds_the_loss_it_names() {
    let p = LossParams::default();
    for name in LossKind::NAMES {
        assert_eq!(LossKind::from_name(name, &p).unwrap().name(), name);
    }
    for (alias, name) in LossKind::ALIASES {
        assert_eq!(LossKind::from_name(alias, &p).unwrap().name(), name);
    }
    assert_eq!(
        LossKind::from_name("hinge", &p).unwrap_err().to_string(),
        "unknown loss 'hinge' (expected tversky, dice, focal-tversky, jaccard, bce, bce-with-logits, focal or \
         lovasz-hinge, or A+B)"
    );
}
