"""MICLe's positive pairs come from two different images of the same patient where the patient has several,
and from one image otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.ssl.micle import micle_partners, multi_image_patients, patient_groups


def test_partners_share_the_patient_and_differ_from_the_anchor():
    pids = np.array(["a", "b", "a", "c", "b", "a", "d", "b", "b"])
    groups = patient_groups(pids, len(pids))
    g = torch.Generator().manual_seed(0)
    seen: dict[int, set[int]] = {}
    for _ in range(200):
        index = torch.arange(len(pids))
        partners = micle_partners(index, groups, g).numpy()
        assert (pids[partners] == pids).all()
        multi = np.array([(pids == p).sum() > 1 for p in pids])
        assert (partners[multi] != np.arange(len(pids))[multi]).all()
        assert (partners[~multi] == np.arange(len(pids))[~multi]).all()  # single image: two crops of it
        for i, p in enumerate(partners):
            seen.setdefault(i, set()).add(int(p))
    assert seen[0] == {2, 5} and seen[1] == {4, 7, 8}  # every other image of the patient gets drawn


def test_groups_without_patient_ids_are_single_images():
    groups = patient_groups(None, 5)
    index = torch.tensor([4, 0, 2])
    assert micle_partners(index, groups, torch.Generator()).tolist() == [4, 0, 2]


@pytest.mark.parametrize(
    "pids, what", [(None, "carry no patient ids"), (np.array(["a", "b", "c"]), "each come from a different patient")]
)
def test_micle_refuses_images_without_a_multi_image_patient(pids, what):
    from study.models import build_backbone
    from study.ssl.micle import MICLe, NoPatientsError

    m = MICLe(build_backbone("small_cnn", 3, 16), 3, 16)
    with pytest.raises(NoPatientsError, match=f"{what}.*manifest with a patient_id column.*or SimCLR"):
        m.bind(torch.zeros(3, 16, 16, 3, dtype=torch.uint8), pids)
    m.bind(torch.zeros(3, 16, 16, 3, dtype=torch.uint8), np.array(["a", "b", "a"]))  # one patient with two


def test_multi_image_patients_are_counted():
    assert multi_image_patients(np.array(["a", "b", "a", "c", "c", "c", "d"])) == 2
    assert multi_image_patients(np.array(["a", "b"])) == 0
    assert multi_image_patients(None) == 0


def test_pretraining_micle_without_patients_raises(tmp_path):
    from study.ssl import PretrainRequest, pretrain
    from study.ssl.micle import NoPatientsError
    from tests.ssl.test_pretrain import BASE

    options = {"num_samples": 32, "image_size": 16, "views_per_patient": 1}
    req = PretrainRequest(**{**BASE, "dataset_options": options, "method": "micle", "batch_size": 8})
    with pytest.raises(NoPatientsError, match="MICLe's training images: .*carry no patient ids"):
        pretrain(req, tmp_path, device="cpu")
    assert not any((tmp_path / "ssl").glob("*/encoder.pt"))  # nothing cached


def test_micle_views_pair_patients(tiny_data):
    from study.models import build_backbone
    from study.ssl.micle import MICLe

    imgs = torch.from_numpy(np.ascontiguousarray(tiny_data.images))
    m = MICLe(build_backbone("small_cnn", 3, 16), 3, 16)
    m.bind(imgs, tiny_data.patient_ids)
    drawn = []
    m.view = lambda x: (drawn.append(x), x)[1]  # record the images each view is made from
    from study.data.pipeline import to_float

    index = torch.arange(8)
    m.pair(to_float(imgs[:8]), index)
    partner_imgs = drawn[1]
    for i in range(8):
        matches = [j for j in range(len(imgs)) if torch.equal(to_float(imgs[j : j + 1])[0], partner_imgs[i])]
        assert matches and all(tiny_data.patient_ids[j] == tiny_data.patient_ids[i] and j != i for j in matches)
