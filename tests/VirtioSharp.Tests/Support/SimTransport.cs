namespace VirtioSharp.Tests.Support;

/// <summary>Transport variants a device can be plugged into on the simulated machine.</summary>
public enum SimTransport
{
    Mmio,
    MmioLegacy,
    Pci,
    PciLegacy,
    /// <summary>A transitional PCI device driven through its legacy I/O BAR.</summary>
    PciTransitionalLegacy,
}
