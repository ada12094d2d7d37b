namespace VirtioSharp.Testing;

/// <summary>Transport variants a device can be plugged into on the simulated machine.</summary>
public enum SimTransport
{
    /// <summary>virtio-mmio, modern (version 2).</summary>
    Mmio,
    /// <summary>virtio-mmio, legacy (version 1).</summary>
    MmioLegacy,
    /// <summary>A modern (non-transitional) virtio PCI device.</summary>
    Pci,
    /// <summary>A legacy virtio PCI device (I/O BAR only).</summary>
    PciLegacy,
    /// <summary>A transitional PCI device driven through its legacy I/O BAR.</summary>
    PciTransitionalLegacy,
}
