namespace VirtioSharp.Platform.Transports;

/// <summary>Which PCI interfaces a virtio-pci device exposes (virtio 1.2 §4.1.1–§4.1.2).</summary>
internal enum PciMode : byte
{
    /// <summary>Modern only: device id 0x1040 + type, capabilities in BAR 4.</summary>
    Modern,
    /// <summary>Legacy only (pre-1.0): device id 0x1000 range, I/O BAR 0.</summary>
    Legacy,
    /// <summary>Both: the interface the driver touches picks the mode.</summary>
    Transitional,
}
