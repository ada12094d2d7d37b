using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>
/// Driver side of virtio-pci: modern (capabilities in a memory BAR, §4.1.4) or legacy (I/O BAR 0, §4.1.4.8), as Linux
/// virtio_pci_modern.c / virtio_pci_legacy.c. A transitional device is driven through the modern interface unless
/// <c>forceLegacy</c> is set. The capability list comes from the device and is walked with loop and bounds checks.
/// </summary>
public sealed class PciTransport : IVirtioTransport
{
    private readonly IRegisterBus _cfg;
    private readonly IRegisterBus _bar;
    private readonly ulong _common, _isr, _device, _notify;
    private readonly uint _notifyMultiplier;

    /// <summary>Walks the PCI capability list in <paramref name="configSpace"/> and maps the virtio structures in <paramref name="bars"/>; <paramref name="forceLegacy"/> drives a transitional device through its legacy I/O BAR.</summary>
    public PciTransport(IRegisterBus configSpace, Func<int, IRegisterBus?> bars, bool forceLegacy = false)
    {
        _cfg = configSpace;
        ushort vendor = (ushort)configSpace.Read(0, 2);
        ushort pciId = (ushort)configSpace.Read(2, 2);
        if (vendor != 0x1AF4 || pciId < 0x1000 || pciId > 0x107F)
            throw new VirtioProbeException($"PCI function {vendor:x4}:{pciId:x4} is not a virtio device (vendor 1af4, device 1000-107f)");
        bool modernOnly = pciId >= 0x1040;
        DeviceId = modernOnly ? (DeviceId)(pciId - 0x1040) : (DeviceId)(ushort)configSpace.Read(0x2E, 2);

        if (!forceLegacy && FindCaps(out var caps))
        {
            _bar = bars(caps.Bar) ?? throw new VirtioProbeException($"virtio capabilities point at BAR {caps.Bar}, which is not implemented");
            (_common, _isr, _device, _notify, _notifyMultiplier) = (caps.Common, caps.Isr, caps.Device, caps.Notify, caps.Multiplier);
            IsLegacy = false;
            return;
        }
        if (modernOnly) throw new VirtioProbeException("modern-only virtio-pci device without usable virtio capabilities");
        _bar = bars(0) ?? throw new VirtioProbeException("legacy virtio-pci device without I/O BAR 0");
        IsLegacy = true;
    }

    private readonly record struct Caps(int Bar, ulong Common, ulong Isr, ulong Device, ulong Notify, uint Multiplier);

    private bool FindCaps(out Caps caps)
    {
        caps = default;
        if ((_cfg.Read(0x06, 2) & 0x10) == 0) return false;
        ulong common = ulong.MaxValue, isr = ulong.MaxValue, device = ulong.MaxValue, notify = ulong.MaxValue;
        uint mult = 0;
        int bar = -1;
        int ptr = (int)(_cfg.Read(0x34, 1) & 0xFC);
        for (int hops = 0; ptr != 0 && hops < 48; hops++)   // 48 = (256-64)/4: more is a loop
        {
            if (ptr < 0x40 || ptr > 0xF0) throw new VirtioProbeException($"PCI capability pointer 0x{ptr:x} is outside the capability area");
            byte vndr = (byte)_cfg.Read((ulong)ptr, 1);
            int next = (int)(_cfg.Read((ulong)ptr + 1, 1) & 0xFC);
            if (vndr == 0x09)
            {
                byte type = (byte)_cfg.Read((ulong)ptr + 3, 1);
                int b = (int)_cfg.Read((ulong)ptr + 4, 1);
                ulong off = _cfg.Read((ulong)ptr + 8, 4);
                // The first capability of each type that the driver can use wins (§4.1.4).
                if (b == 4 || bar < 0 || b == bar)
                {
                    switch (type)
                    {
                        case 1 when common == ulong.MaxValue: common = off; bar = b; break;
                        case 2 when notify == ulong.MaxValue: notify = off; mult = (uint)_cfg.Read((ulong)ptr + 16, 4); bar = b; break;
                        case 3 when isr == ulong.MaxValue: isr = off; bar = b; break;
                        case 4 when device == ulong.MaxValue: device = off; bar = b; break;
                    }
                }
            }
            ptr = next;
        }
        if (ptr != 0) throw new VirtioProbeException("PCI capability list loops");
        if (common == ulong.MaxValue || notify == ulong.MaxValue || isr == ulong.MaxValue) return false;
        caps = new Caps(bar, common, isr, device, notify, mult);
        return true;
    }

    /// <inheritdoc/>
    public TransportKind Kind => IsLegacy ? TransportKind.PciLegacy : TransportKind.Pci;
    /// <inheritdoc/>
    public bool IsLegacy { get; }
    /// <inheritdoc/>
    public DeviceId DeviceId { get; }
    /// <inheritdoc/>
    public ulong LegacyAlign => 4096;

    private ulong C(ulong off, int size) => _bar.Read(_common + off, size);
    private void Cw(ulong off, int size, ulong v) => _bar.Write(_common + off, size, v);

    /// <inheritdoc/>
    public DeviceStatus GetStatus() => (DeviceStatus)(byte)(IsLegacy ? _bar.Read(0x12, 1) : C(0x14, 1));
    /// <inheritdoc/>
    public void SetStatus(DeviceStatus status)
    {
        if (IsLegacy) _bar.Write(0x12, 1, (byte)status); else Cw(0x14, 1, (byte)status);
    }

    /// <inheritdoc/>
    public void Reset()
    {
        SetStatus(DeviceStatus.Reset);
        if (GetStatus() != DeviceStatus.Reset) throw new VirtioProbeException("device did not reset: status still reads non-zero after writing 0");
    }

    /// <inheritdoc/>
    public ulong GetFeatures()
    {
        if (IsLegacy) return _bar.Read(0x00, 4);
        Cw(0x00, 4, 0);
        ulong f = C(0x04, 4);
        Cw(0x00, 4, 1);
        return f | (C(0x04, 4) << 32);
    }

    /// <inheritdoc/>
    public void SetFeatures(ulong features)
    {
        if (IsLegacy)
        {
            if (features >> 32 != 0) throw new ArgumentException("legacy devices take only 32 feature bits");
            _bar.Write(0x04, 4, features);
            return;
        }
        Cw(0x08, 4, 0); Cw(0x0C, 4, (uint)features);
        Cw(0x08, 4, 1); Cw(0x0C, 4, features >> 32);
    }

    /// <inheritdoc/>
    public ushort GetQueueMaxSize(int queue)
    {
        if (IsLegacy)
        {
            _bar.Write(0x0E, 2, (ulong)queue);
            return (ushort)_bar.Read(0x0C, 2);
        }
        if ((ulong)queue >= C(0x12, 2)) return 0;
        Cw(0x16, 2, (ulong)queue);
        if (C(0x1C, 2) != 0) throw new VirtioProbeException($"queue {queue} is already enabled before setup");
        return (ushort)C(0x18, 2);
    }

    /// <inheritdoc/>
    public void SetupQueue(int queue, DriverQueue ring)
    {
        var l = ring.DeviceLayout;
        if (IsLegacy)
        {
            if ((l.Desc & 4095) != 0 || l.Desc >> 12 > uint.MaxValue)
                throw new VirtioProbeException($"legacy queue {queue} at 0x{l.Desc:x} cannot be described by a 32-bit page number");
            // Page number 0 means "no queue" to a legacy device: a ring on page 0 would be silently disabled and every
            // request would hang; refuse it with a reason instead.
            if (l.Desc == 0)
                throw new VirtioProbeException($"legacy queue {queue} is on guest page 0, which a legacy device reads as \"no queue\"");
            _bar.Write(0x0E, 2, (ulong)queue);
            _bar.Write(0x08, 4, l.Desc >> 12);
            if (_bar.Read(0x08, 4) != l.Desc >> 12) throw new VirtioProbeException($"device refused legacy queue {queue}");
            return;
        }
        Cw(0x16, 2, (ulong)queue);
        Cw(0x18, 2, ring.Size);
        Cw(0x20, 8, l.Desc);
        Cw(0x28, 8, l.Avail);
        Cw(0x30, 8, l.Used);
        Cw(0x1C, 2, 1);
        if (C(0x1C, 2) != 1) throw new VirtioProbeException($"device refused to enable queue {queue} (size {ring.Size})");
    }

    /// <inheritdoc/>
    public void DeleteQueue(int queue)
    {
        if (!IsLegacy) return;
        _bar.Write(0x0E, 2, (ulong)queue);
        _bar.Write(0x08, 4, 0);
    }

    /// <summary>§4.1.5.2: with NOTIFICATION_DATA the driver writes the 32-bit notification value to the queue's address.</summary>
    public void Notify(int queue, uint data)
    {
        if (IsLegacy) { Notify(queue); return; }
        Cw(0x16, 2, (ulong)queue);
        ulong off = C(0x1E, 2);
        _bar.Write(_notify + off * _notifyMultiplier, 4, data);
    }

    /// <inheritdoc/>
    public void Notify(int queue)
    {
        if (IsLegacy) { _bar.Write(0x10, 2, (ulong)queue); return; }
        Cw(0x16, 2, (ulong)queue);
        ulong off = C(0x1E, 2);
        _bar.Write(_notify + off * _notifyMultiplier, 2, (ulong)queue);
    }

    /// <inheritdoc/>
    public uint ReadAndAckInterrupt() => (uint)(IsLegacy ? _bar.Read(0x13, 1) : _bar.Read(_isr, 1));

    /// <inheritdoc/>
    public byte ConfigGeneration => IsLegacy ? (byte)0 : (byte)C(0x15, 1);

    private ulong ConfigBase => IsLegacy ? 0x14UL : _device;

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (byte)_bar.Read(ConfigBase + (ulong)(offset + i), 1);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source)
    {
        for (int i = 0; i < source.Length; i++) _bar.Write(ConfigBase + (ulong)(offset + i), 1, source[i]);
    }
}
