using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

/// <summary>
/// A simulated machine with devices on virtio-mmio and virtio-pci slots. Device work runs when the driver notifies
/// (or, with <see cref="Deferred"/>, when the machine is polled), all on the caller's thread, so runs are repeatable.
/// </summary>
public sealed class SimMachine(SimPlatformOptions options) : IDisposable
{
    private readonly List<SimSlot> _slots = new();

    /// <summary>The simulated platform (RAM, IOMMU, protection, cache, bounce pool) the devices sit on.</summary>
    public SimPlatform Platform { get; } = new(options);
    /// <summary>The devices plugged in, in order.</summary>
    public IReadOnlyList<SimSlot> Slots => _slots;

    /// <summary>Queue notifications and run devices only when polled: requests pile up in flight.</summary>
    public bool Deferred
    {
        get;
        set { field = value; foreach (var s in _slots) s.Core.Deferred = value; }
    }

    /// <summary>Plugs <paramref name="device"/> in on a virtio-mmio slot (legacy: version 1 registers).</summary>
    public SimSlot AddMmio(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, string name, bool legacy = false, Placement? at = null)
    {
        var dev = Attach(name, at);
        var mmio = new VirtioMmioDevice<DeviceMemory<TranslatorRef, PortRef>>(device, dev.Memory, legacy, name);
        return Add(new SimSlot(this, dev, mmio.Core, _ => new MmioTransport(mmio), legacy ? TransportKind.MmioLegacy : TransportKind.Mmio));
    }

    /// <summary>Plugs <paramref name="device"/> in on a virtio-pci slot (modern, transitional or legacy).</summary>
    public SimSlot AddPci(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, string name, PciMode mode = PciMode.Modern, Placement? at = null)
    {
        var dev = Attach(name, at);
        var pci = new VirtioPciDevice<DeviceMemory<TranslatorRef, PortRef>>(device, dev.Memory, mode, name);
        return Add(new SimSlot(this, dev, pci.Core, legacy => new PciTransport(pci.ConfigSpace, pci.Bar, legacy),
            mode == PciMode.Legacy ? TransportKind.PciLegacy : TransportKind.Pci));
    }

    private SimDevice Attach(string name, Placement? at)
    {
        at ??= new Placement();
        return Platform.Attach(name, at.BehindIommu, at.IommuBypass, at.Coherent, at.DmaOffset);
    }

    private SimSlot Add(SimSlot slot)
    {
        slot.Core.Deferred = Deferred;
        _slots.Add(slot);
        return slot;
    }

    /// <summary>Runs deferred device work; true if any device ran.</summary>
    public bool Poll()
    {
        int ran = 0;
        Platform.Ordering?.Tick();
        foreach (var s in _slots) ran += s.Core.RunPending();
        return ran > 0;
    }

    /// <summary>Releases the platform's memory.</summary>
    public void Dispose() => Platform.Dispose();
}
