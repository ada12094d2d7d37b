namespace VirtioSharp.Dma;

/// <summary>How the device is attached, as the transport reports it.</summary>
public enum TransportKind : byte
{
    Mmio,
    MmioLegacy,
    Pci,
    PciLegacy,
    VhostUser,
}
