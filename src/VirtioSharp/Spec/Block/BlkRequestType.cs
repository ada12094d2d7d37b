// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>virtio-blk request types and status values (virtio 1.2 §5.2.6).</summary>
public static class BlkRequestType
{
    // One declaration for the whole table: the names are the spec's VIRTIO_BLK_T_* request types.
#pragma warning disable CS1591
    public const uint In = 0, Out = 1, Flush = 4, GetId = 8, GetLifetime = 10, Discard = 11, WriteZeroes = 13, SecureErase = 14;
#pragma warning restore CS1591
}
