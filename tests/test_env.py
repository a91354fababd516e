from fercore.env import check_environment, landmark_model_path


def test_landmark_model_is_found_without_importing_its_package():
    path = landmark_model_path()
    assert path is not None and path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.stat().st_size > 50_000_000  # the real 68-point model (about 95 MB), not a stub


def test_environment_report_names_versions_and_device():
    report = check_environment()
    assert report["device"] in ("cpu", "cuda:0") and report["dlib"] and report["landmark_model"]
    assert report["torch"].split("+")[0].count(".") == 2
