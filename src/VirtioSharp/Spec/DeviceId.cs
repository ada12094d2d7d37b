namespace VirtioSharp.Spec;

/// <summary>Virtio device ids (virtio 1.2 §5).</summary>
public enum DeviceId : uint
{
    /// <summary>Reserved (invalid); no device has id 0.</summary>
    Reserved = 0,
    /// <summary>Network card (§5.1).</summary>
    Network = 1,
    /// <summary>Block device (§5.2).</summary>
    Block = 2,
    /// <summary>Console (§5.3).</summary>
    Console = 3,
    /// <summary>Entropy source (§5.4).</summary>
    Entropy = 4,
    /// <summary>Traditional memory balloon (§5.5).</summary>
    Balloon = 5,
    /// <summary>SCSI host (§5.6).</summary>
    Scsi = 8,
    /// <summary>GPU device (§5.7).</summary>
    Gpu = 16,
    /// <summary>Input device (§5.8).</summary>
    Input = 18,
    /// <summary>Socket device (§5.10).</summary>
    Vsock = 19,
    /// <summary>Crypto device (§5.9).</summary>
    Crypto = 20,
    /// <summary>IOMMU device (§5.13).</summary>
    Iommu = 23,
    /// <summary>Memory device (§5.15).</summary>
    Memory = 24,
    /// <summary>File system device (§5.11).</summary>
    Fs = 26,
}
