namespace VirtioSharp.Spec;

/// <summary>Virtio device ids (virtio 1.2 §5).</summary>
public enum DeviceId : uint
{
    Reserved = 0,
    Network = 1,
    Block = 2,
    Console = 3,
    Entropy = 4,
    Balloon = 5,
    Scsi = 8,
    Gpu = 16,
    Input = 18,
    Vsock = 19,
    Crypto = 20,
    Iommu = 23,
    Memory = 24,
    Fs = 26,
}
