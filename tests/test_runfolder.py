import pytest

from ssdd.runfolder import check_resume_compatible, config_hash


def test_a_setting_at_its_legacy_value_leaves_the_hash_of_an_older_config_unchanged():
    old = {"a": 1, "group": {"b": "x"}}
    new = {"a": 1, "group": {"b": "x", "added": False}}
    legacy = {"group.added": False}
    assert config_hash(new, legacy=legacy) == config_hash(old, legacy=legacy) == config_hash(old)
    changed = {"a": 1, "group": {"b": "x", "added": True}}
    assert config_hash(changed, legacy=legacy) != config_hash(old)
    assert config_hash(new) != config_hash(old)  # without the table the new key counts


def test_resume_accepts_a_saved_config_without_a_later_setting_only_at_its_legacy_value():
    saved = {"a": 1}
    check_resume_compatible(saved, {"a": 1, "added": False}, legacy={"added": False})
    with pytest.raises(ValueError, match="added"):
        check_resume_compatible(saved, {"a": 1, "added": True}, legacy={"added": False})
    with pytest.raises(ValueError, match="added"):
        check_resume_compatible(saved, {"a": 1, "added": False})
