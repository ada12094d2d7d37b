// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>The request status byte the device writes last (virtio 1.2 §5.2.6).</summary>
public enum BlkStatus : byte
{
    Ok = 0,
    IoErr = 1,
    Unsupp = 2,
}
