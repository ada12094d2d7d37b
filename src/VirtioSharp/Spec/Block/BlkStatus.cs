// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>The request status byte the device writes last (virtio 1.2 §5.2.6).</summary>
public enum BlkStatus : byte
{
    /// <summary>VIRTIO_BLK_S_OK: the request succeeded.</summary>
    Ok = 0,
    /// <summary>VIRTIO_BLK_S_IOERR: the request failed (device or host I/O error, or a malformed request).</summary>
    IoErr = 1,
    /// <summary>VIRTIO_BLK_S_UNSUPP: the request type is not supported by the device.</summary>
    Unsupp = 2,
}
