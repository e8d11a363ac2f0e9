"""Counting a node's NVIDIA GPUs from CUDA_VISIBLE_DEVICES, /proc/driver/nvidia and nvidia-smi -L."""
from ember.logic.gpus import count_nvidia_smi_list, count_proc_entries, detected_count, visible_devices

SMI_TWO = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5a1b2c3d-0000-1111-2222-333344445555)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-6a1b2c3d-0000-1111-2222-333344445555)
"""
SMI_MIG = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)
  MIG 3g.20gb     Device  0: (UUID: MIG-bbbb)
  MIG 3g.20gb     Device  1: (UUID: MIG-cccc)
"""


def test_cuda_visible_devices_is_the_answer_when_set():
    assert visible_devices(None) is None
    assert visible_devices("") == [] and visible_devices("NoDevFiles") == []
    assert visible_devices("2, 3") == ["2", "3"]
    assert detected_count("1", ["0000:3b:00.0", "0000:5e:00.0"], SMI_TWO) == 1
    assert detected_count("", ["0000:3b:00.0"], SMI_TWO) == 0


def test_proc_driver_entries_then_nvidia_smi():
    assert count_proc_entries(["0000:3b:00.0", "0000:5e:00.0", "README"]) == 2
    assert detected_count(None, ["0000:3b:00.0", "0000:5e:00.0"], None) == 2
    assert detected_count(None, [], SMI_TWO) == 2
    assert detected_count(None, None, None) == 0


def test_nvidia_smi_list_counts_gpus_not_mig_devices():
    assert count_nvidia_smi_list(SMI_TWO) == 2
    assert count_nvidia_smi_list(SMI_MIG) == 1
    assert count_nvidia_smi_list("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == 0


def test_tasks_see_the_node_device_names_not_indices():
    from ember.logic.gpus import task_visible_devices
    assert task_visible_devices([0, 1], None) == "0,1"
    assert task_visible_devices([1], "2,3") == "3"
    assert task_visible_devices([0], "GPU-aaaa,GPU-bbbb") == "GPU-aaaa"
    assert task_visible_devices([0], "") == "0"
