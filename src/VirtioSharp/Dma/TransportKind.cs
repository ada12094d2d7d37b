namespace VirtioSharp.Dma;

/// <summary>How the device is attached, as the transport reports it.</summary>
public enum TransportKind : byte
{
    /// <summary>virtio-mmio version 2 (virtio 1.2 §4.2).</summary>
    Mmio,
    /// <summary>Legacy virtio-mmio version 1 (virtio 1.2 §4.2.4).</summary>
    MmioLegacy,
    /// <summary>Modern virtio-pci (virtio 1.2 §4.1).</summary>
    Pci,
    /// <summary>Legacy (transitional) virtio-pci I/O BAR (virtio 1.2 §4.1.4.10).</summary>
    PciLegacy,
    /// <summary>A vhost-user back-end reached over a socket (vhost-user.rst).</summary>
    VhostUser,
}
