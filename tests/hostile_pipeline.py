"""Hostile twins of a package carrying find_best_configuration's results, one generator per attack.

Each takes the entries of a good pipeline package (name, bytes) and returns the entries to sign;
``tests/helpers.signed_package`` signs them with a trusted key, so only content checks can refuse.
"""

from __future__ import annotations

import json

CANARY_COMMAND = "touch CANARY_PAYLOAD_RAN"


def _edit_json(entries: list[tuple[str, bytes]], suffix: str, edit) -> list[tuple[str, bytes]]:
    out = []
    for name, data in entries:
        if name.endswith(suffix):
            value = json.loads(data)
            edit(value)
            data = json.dumps(value, indent=2).encode()
        out.append((name, data))
    return out


def postprocessing_names_os_system(entries):
    def edit(value):
        value["postprocessing_fns"][0] = "os.system"
        value["postprocessing_kwargs"][0] = {"command": CANARY_COMMAND}
    return _edit_json(entries, "crossval_results_folds_0_1/postprocessing.json", edit)


def postprocessing_names_save_pickle(entries):
    def edit(value):
        value["postprocessing_fns"][0] = "nnunetv2.utilities.file_and_folder_operations.save_pickle"
    return _edit_json(entries, "crossval_results_folds_0_1/postprocessing.json", edit)


def postprocessing_names_dotted_path(entries):
    def edit(value):
        value["postprocessing_fns"][0] = ("nnunetv2.postprocessing.remove_connected_components."
                                          "remove_all_but_largest_component_from_segmentation")
    return _edit_json(entries, "crossval_results_folds_0_1/postprocessing.json", edit)


def postprocessing_kwarg_wrong_type(entries):
    def edit(value):
        value["postprocessing_kwargs"][0] = {"labels_or_regions": "1; touch CANARY_PAYLOAD_RAN"}
    return _edit_json(entries, "crossval_results_folds_0_1/postprocessing.json", edit)


def postprocessing_unknown_kwarg(entries):
    def edit(value):
        value["postprocessing_kwargs"][0]["__reduce__"] = 1
    return _edit_json(entries, "crossval_results_folds_0_1/postprocessing.json", edit)


def package_with_postprocessing_pkl(entries):
    name = next(n for n, _ in entries if n.endswith("crossval_results_folds_0_1/postprocessing.json"))
    payload = b"cos\nsystem\n(S'" + CANARY_COMMAND.encode() + b"'\ntR."
    return [*entries, (name.replace(".json", ".pkl"), payload)]


def inference_information_path_escaping(entries):
    def edit(value):
        value["best_model_or_ensemble"]["postprocessing_file"] = "Dataset042_Toy/../../../etc/postprocessing.pkl"
    return _edit_json(entries, "inference_information.json", edit)


def inference_information_absolute_path(entries):
    def edit(value):
        value["best_model_or_ensemble"]["some_plans_file"] = "/etc/nnUNetTrainer__nnUNetPlans__2d/plans.json"
    return _edit_json(entries, "inference_information.json", edit)


def inference_information_shell_in_name(entries):
    def edit(value):
        value["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] = "x; " + CANARY_COMMAND
    return _edit_json(entries, "inference_information.json", edit)


def ensemble_folder_with_dotdot(entries):
    out = []
    for name, data in entries:
        if "/ensembles/" in name:
            dataset, _, folder, file_name = name.split("/")
            name = f"{dataset}/ensembles/ensemble___..___nnUNetTrainer__nnUNetPlans__2d___0_1/{file_name}"
        out.append((name, data))
    return out


def ensemble_member_missing(entries):
    out = []
    for name, data in entries:
        if "/ensembles/" in name:
            name = name.replace("__3d_fullres___", "__3d_lowres___")
        out.append((name, data))
    return out


ATTACKS = {
    "postprocessing_names_os_system": (postprocessing_names_os_system, "os.system"),
    "postprocessing_names_save_pickle": (postprocessing_names_save_pickle, "save_pickle"),
    "postprocessing_names_dotted_path": (postprocessing_names_dotted_path, "not one of nnU-Net's postprocessing"),
    "postprocessing_kwarg_wrong_type": (postprocessing_kwarg_wrong_type, "is not a label"),
    "postprocessing_unknown_kwarg": (postprocessing_unknown_kwarg, "takes no keyword"),
    "package_with_postprocessing_pkl": (package_with_postprocessing_pkl, "pickle"),
    "inference_information_path_escaping": (inference_information_path_escaping, "postprocessing_file"),
    "inference_information_absolute_path": (inference_information_absolute_path, "some_plans_file"),
    "inference_information_shell_in_name": (inference_information_shell_in_name, "not a plain name"),
    "ensemble_folder_with_dotdot": (ensemble_folder_with_dotdot, "ensemble"),
    "ensemble_member_missing": (ensemble_member_missing, "3d_lowres"),
}


# --- postprocessing.pkl files a scan meets in a results folder --------------------------------
# Each is what a tampered results folder could hold beside nnseal's rebuilt pickle; pickletools-level
# bytes, written by hand: nothing here is ever unpickled.

_PP_MODULE = b"nnunetv2.postprocessing.remove_connected_components"
_PP_FUNCTION = b"remove_all_but_largest_component_from_segmentation"


def postprocessing_pickle_calls_os_system(canary: str) -> bytes:
    """(os.system(<touch canary>),): a global outside the allowlist, called."""
    command = f"touch {canary}".encode()
    return (b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command + b"\x85R\x85.")


def postprocessing_pickle_calls_allowed_function(canary: str) -> bytes:
    """The allowlisted function itself, but called (REDUCE) at load time instead of referenced."""
    return (b"\x80\x02c" + _PP_MODULE + b"\n" + _PP_FUNCTION + b"\n" + b"(J\x00\x00\x00\x00tR.")


def postprocessing_pickle_stack_global_through_memo(canary: str) -> bytes:
    """os.system named by STACK_GLOBAL from memoized strings (protocol 4), then called."""
    command = f"touch {canary}".encode()
    return (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93X" + len(command).to_bytes(4, "little")
            + command + b"\x85R\x85.")


def postprocessing_pickle_followed_by_another(canary: str) -> bytes:
    """An allowlisted postprocessing pickle, then a second pickle that calls os.system."""
    first = b"\x80\x02]q\x00(c" + _PP_MODULE + b"\n" + _PP_FUNCTION + b"\n" + b"e]\x86."
    return first + postprocessing_pickle_calls_os_system(canary)
