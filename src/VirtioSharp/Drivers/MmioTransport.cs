using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>Driver side of virtio-mmio, versions 1 (legacy) and 2 (virtio 1.2 §4.2.3, Linux virtio_mmio.c).</summary>
public sealed class MmioTransport : IVirtioTransport
{
    private const ulong Config = 0x100;
    private readonly IRegisterBus _bus;

    /// <summary>Probes the virtio-mmio registers on <paramref name="bus"/>: checks magic, version and device id; throws <see cref="VirtioProbeException"/> if there is no usable device.</summary>
    public MmioTransport(IRegisterBus bus)
    {
        _bus = bus;
        uint magic = R(0x000);
        if (magic != 0x74726976)
            throw new VirtioProbeException($"no virtio-mmio device: magic 0x{magic:x8} is not 0x74726976 (\"virt\")");
        uint version = R(0x004);
        if (version is not (1 or 2))
            throw new VirtioProbeException($"virtio-mmio version {version} is not supported (1 = legacy, 2 = modern)");
        IsLegacy = version == 1;
        DeviceId = (DeviceId)R(0x008);
        if (DeviceId == DeviceId.Reserved)
            throw new VirtioProbeException("virtio-mmio device id 0: a placeholder with no device behind it");
        if (IsLegacy) W(0x028, 4096);   // GuestPageSize, so QueuePFN is in 4 KiB pages
    }

    /// <inheritdoc/>
    public TransportKind Kind => IsLegacy ? TransportKind.MmioLegacy : TransportKind.Mmio;
    /// <inheritdoc/>
    public bool IsLegacy { get; }
    /// <inheritdoc/>
    public DeviceId DeviceId { get; }
    /// <inheritdoc/>
    public ulong LegacyAlign => 4096;

    private uint R(ulong off) => (uint)_bus.Read(off, 4);
    private void W(ulong off, uint v) => _bus.Write(off, 4, v);

    /// <inheritdoc/>
    public DeviceStatus GetStatus() => (DeviceStatus)(byte)R(0x070);
    /// <inheritdoc/>
    public void SetStatus(DeviceStatus status) => W(0x070, (uint)status);

    /// <inheritdoc/>
    public void Reset()
    {
        W(0x070, 0);
        if (R(0x070) != 0) throw new VirtioProbeException("device did not reset: status still reads non-zero after writing 0");
    }

    /// <inheritdoc/>
    public ulong GetFeatures()
    {
        W(0x014, 0);
        ulong f = R(0x010);
        if (!IsLegacy) { W(0x014, 1); f |= (ulong)R(0x010) << 32; }
        return f;
    }

    /// <inheritdoc/>
    public void SetFeatures(ulong features)
    {
        W(0x024, 0); W(0x020, (uint)features);
        if (!IsLegacy) { W(0x024, 1); W(0x020, (uint)(features >> 32)); }
        else if (features >> 32 != 0) throw new ArgumentException("legacy devices take only 32 feature bits");
    }

    /// <inheritdoc/>
    public ushort GetQueueMaxSize(int queue)
    {
        W(0x030, (uint)queue);
        if (!IsLegacy && R(0x044) != 0) throw new VirtioProbeException($"queue {queue} is already live before setup");
        return (ushort)Math.Min(R(0x034), 32768u);
    }

    /// <inheritdoc/>
    public void SetupQueue(int queue, DriverQueue ring)
    {
        var l = ring.DeviceLayout;
        W(0x030, (uint)queue);
        W(0x038, ring.Size);
        if (IsLegacy)
        {
            if ((l.Desc & 4095) != 0 || l.Desc >> 12 > uint.MaxValue)
                throw new VirtioProbeException($"legacy queue {queue} at 0x{l.Desc:x} cannot be described by a 32-bit page number");
            // Page number 0 means "no queue" to a legacy device: a ring on page 0 would be silently disabled and every
            // request would hang; refuse it with a reason instead.
            if (l.Desc == 0)
                throw new VirtioProbeException($"legacy queue {queue} is on guest page 0, which a legacy device reads as \"no queue\"");
            W(0x03c, 4096);
            W(0x040, (uint)(l.Desc >> 12));
            if (R(0x040) != (uint)(l.Desc >> 12)) throw new VirtioProbeException($"device refused legacy queue {queue}");
            return;
        }
        W(0x080, (uint)l.Desc); W(0x084, (uint)(l.Desc >> 32));
        W(0x090, (uint)l.Avail); W(0x094, (uint)(l.Avail >> 32));
        W(0x0a0, (uint)l.Used); W(0x0a4, (uint)(l.Used >> 32));
        W(0x044, 1);
        if (R(0x044) != 1) throw new VirtioProbeException($"device refused to enable queue {queue} (size {ring.Size})");
    }

    /// <inheritdoc/>
    public void DeleteQueue(int queue)
    {
        W(0x030, (uint)queue);
        if (IsLegacy) W(0x040, 0); else W(0x044, 0);
    }

    /// <inheritdoc/>
    public void Notify(int queue) => W(0x050, (uint)queue);

    /// <summary>§4.2.2: with NOTIFICATION_DATA, QueueNotify takes the whole 32-bit notification value.</summary>
    public void Notify(int queue, uint data) => W(0x050, data);

    /// <inheritdoc/>
    public uint ReadAndAckInterrupt()
    {
        uint s = R(0x060);
        if (s != 0) W(0x064, s);
        return s;
    }

    /// <inheritdoc/>
    public byte ConfigGeneration => IsLegacy ? (byte)0 : (byte)R(0x0fc);

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (byte)_bus.Read(Config + (ulong)(offset + i), 1);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source)
    {
        for (int i = 0; i < source.Length; i++) _bus.Write(Config + (ulong)(offset + i), 1, source[i]);
    }
}
