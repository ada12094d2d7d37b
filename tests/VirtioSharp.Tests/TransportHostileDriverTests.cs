using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Platform.Transports;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// A driver that writes the transport registers in the wrong order or with bad values, straight through the mmio and
/// pci register buses. The transport must refuse and log, never crash, and never let the device touch memory it was
/// not given.
/// </summary>
public class TransportHostileDriverTests
{
    public enum Regs { MmioV2, MmioV1, PciModern, PciLegacy }

    private static bool Legacy(Regs r) => r is Regs.MmioV1 or Regs.PciLegacy;

    /// <summary>One device on one transport, driven register by register; the device's memory accesses are logged.</summary>
    private sealed class Harness : IDisposable
    {
        public const ushort Max = 16;
        private readonly IRegisterBus _bus;

        public Harness(Regs regs, Func<ulong, string?>? reject = null, ushort? maxQueueSize = null)
        {
            Regs = regs;
            Platform = new SimPlatform(new SimPlatformOptions { RamSize = 4UL << 20, BouncePoolSize = 0 });
            Platform.Allocator.Allocate(4096);   // keep rings off page 0: a legacy PFN of 0 means "disable"
            var port = Platform.Attach("dev");
            var mem = new LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>(port.Memory, Log);
            Disk = new MemoryBackend(64 * 1024);
            Device = new DelegatingDevice<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>(
                new BlockDevice<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>(Disk, new BlockDeviceOptions { LegacyOnly = Legacy(regs), QueueSize = Max, NumQueues = 2 }))
            { RejectFeatures = reject, MaxQueueSizeOverride = maxQueueSize };
            switch (regs)
            {
                case Regs.MmioV2 or Regs.MmioV1:
                    var mmio = new VirtioMmioDevice<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>(Device, mem, legacy: regs == Regs.MmioV1);
                    Core = mmio.Core;
                    _bus = mmio;
                    break;
                default:
                    var pci = new VirtioPciDevice<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>(Device, mem, regs == Regs.PciModern ? PciMode.Modern : PciMode.Legacy);
                    Core = pci.Core;
                    _bus = regs == Regs.PciModern ? pci.Bar4! : pci.Bar0!;
                    break;
            }
            Core.InterruptRaised += () => Interrupts++;
        }

        public Regs Regs { get; }
        public SimPlatform Platform { get; }
        public AccessLog Log { get; } = new();
        public MemoryBackend Disk { get; }
        public DelegatingDevice<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>> Device { get; }
        public VirtioTransportCore<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>> Core { get; }
        public int Interrupts { get; private set; }
        private bool Mmio => Regs is Regs.MmioV1 or Regs.MmioV2;

        public void Status(DeviceStatus s)
        {
            if (Mmio) _bus.Write(MmioReg.Status, 4, (byte)s);
            else _bus.Write(Regs == Regs.PciModern ? PciLayout.DeviceStatus : PciLayout.LegacyStatus, 1, (byte)s);
        }

        public DeviceStatus Status() => (DeviceStatus)(byte)(Mmio ? _bus.Read(MmioReg.Status, 4)
            : _bus.Read(Regs == Regs.PciModern ? PciLayout.DeviceStatus : PciLayout.LegacyStatus, 1));

        public ulong DeviceFeatures()
        {
            switch (Regs)
            {
                case Regs.PciLegacy: return _bus.Read(PciLayout.LegacyHostFeatures, 4);
                case Regs.PciModern:
                    _bus.Write(PciLayout.DeviceFeatureSelect, 4, 0);
                    ulong lo = _bus.Read(PciLayout.DeviceFeature, 4);
                    _bus.Write(PciLayout.DeviceFeatureSelect, 4, 1);
                    return lo | _bus.Read(PciLayout.DeviceFeature, 4) << 32;
                default:
                    _bus.Write(MmioReg.DeviceFeaturesSel, 4, 0);
                    ulong l = _bus.Read(MmioReg.DeviceFeatures, 4);
                    _bus.Write(MmioReg.DeviceFeaturesSel, 4, 1);
                    return l | _bus.Read(MmioReg.DeviceFeatures, 4) << 32;
            }
        }

        public void DriverFeatures(ulong f)
        {
            switch (Regs)
            {
                case Regs.PciLegacy: _bus.Write(PciLayout.LegacyGuestFeatures, 4, (uint)f); break;
                case Regs.PciModern:
                    _bus.Write(PciLayout.DriverFeatureSelect, 4, 0); _bus.Write(PciLayout.DriverFeature, 4, (uint)f);
                    _bus.Write(PciLayout.DriverFeatureSelect, 4, 1); _bus.Write(PciLayout.DriverFeature, 4, f >> 32);
                    break;
                default:
                    _bus.Write(MmioReg.DriverFeaturesSel, 4, 0); _bus.Write(MmioReg.DriverFeatures, 4, (uint)f);
                    _bus.Write(MmioReg.DriverFeaturesSel, 4, 1); _bus.Write(MmioReg.DriverFeatures, 4, f >> 32);
                    break;
            }
        }

        public void SelectQueue(int q)
        {
            if (Mmio) _bus.Write(MmioReg.QueueSel, 4, (uint)q);
            else _bus.Write(Regs == Regs.PciModern ? PciLayout.QueueSelect : PciLayout.LegacyQueueSelect, 2, (uint)q);
        }

        /// <summary>QueueNum / queue_size (legacy PCI has no size register: its queues have the maximum size).</summary>
        public void QueueSize(ulong n)
        {
            if (Mmio) _bus.Write(MmioReg.QueueNum, 4, n);
            else if (Regs == Regs.PciModern) _bus.Write(PciLayout.QueueSize, 2, n);
        }

        public ulong ReadQueueSize() => Regs == Regs.PciModern ? _bus.Read(PciLayout.QueueSize, 2) : throw new NotSupportedException();

        /// <summary>Gives the selected queue its rings and enables it; returns whether the device reports it enabled.</summary>
        public bool Enable(ulong desc, ulong avail, ulong used)
        {
            switch (Regs)
            {
                case Regs.MmioV1:
                    _bus.Write(MmioReg.QueueAlign, 4, 4096);
                    _bus.Write(MmioReg.QueuePfn, 4, desc >> 12);
                    return _bus.Read(MmioReg.QueuePfn, 4) == desc >> 12;
                case Regs.PciLegacy:
                    _bus.Write(PciLayout.LegacyQueueAddress, 4, desc >> 12);
                    return _bus.Read(PciLayout.LegacyQueueAddress, 4) == desc >> 12;
                case Regs.PciModern:
                    _bus.Write(PciLayout.QueueDesc, 8, desc);
                    _bus.Write(PciLayout.QueueDriver, 8, avail);
                    _bus.Write(PciLayout.QueueDevice, 8, used);
                    _bus.Write(PciLayout.QueueEnable, 2, 1);
                    return _bus.Read(PciLayout.QueueEnable, 2) == 1;
                default:
                    _bus.Write(MmioReg.QueueDescLow, 4, (uint)desc); _bus.Write(MmioReg.QueueDescHigh, 4, desc >> 32);
                    _bus.Write(MmioReg.QueueDriverLow, 4, (uint)avail); _bus.Write(MmioReg.QueueDriverHigh, 4, avail >> 32);
                    _bus.Write(MmioReg.QueueDeviceLow, 4, (uint)used); _bus.Write(MmioReg.QueueDeviceHigh, 4, used >> 32);
                    _bus.Write(MmioReg.QueueReady, 4, 1);
                    return _bus.Read(MmioReg.QueueReady, 4) == 1;
            }
        }

        /// <summary>Rings for a queue of <paramref name="size"/> in fresh RAM, laid out for this transport.</summary>
        public (ulong Desc, ulong Avail, ulong Used) Rings(ushort size)
        {
            ulong b = Platform.Allocator.Allocate(SplitRingLayout.LegacyBytes(size));
            if (Legacy(Regs)) { var l = SplitRingLayout.Legacy(size, b, false, RingEndian.Little); return (l.Desc, l.Avail, l.Used); }
            return (b, b + SplitRingLayout.DescBytes(size), b + 4096);
        }

        public void Notify(int q)
        {
            switch (Regs)
            {
                case Regs.PciModern: _bus.Write(PciLayout.NotifyOffset + (ulong)q * PciLayout.NotifyMultiplier, 2, (uint)q); break;
                case Regs.PciLegacy: _bus.Write(PciLayout.LegacyQueueNotify, 2, (uint)q); break;
                default: _bus.Write(MmioReg.QueueNotify, 4, (uint)q); break;
            }
        }

        private ulong ConfigBase => Regs switch { Regs.PciModern => PciLayout.DeviceOffset, Regs.PciLegacy => PciLayout.LegacyConfig, _ => MmioReg.Config };
        public ulong ConfigRead(int offset, int size) => _bus.Read(ConfigBase + (ulong)offset, size);
        public void ConfigWrite(int offset, int size, ulong v) => _bus.Write(ConfigBase + (ulong)offset, size, v);

        /// <summary>The ordinary sequence up to (not including) DRIVER_OK, with queue 0 set up at <paramref name="rings"/>.</summary>
        public DeviceStatus Negotiate(ulong features)
        {
            Status(DeviceStatus.Acknowledge);
            Status(DeviceStatus.Acknowledge | DeviceStatus.Driver);
            DriverFeatures(features);
            var s = DeviceStatus.Acknowledge | DeviceStatus.Driver;
            if (!Legacy(Regs)) { s |= DeviceStatus.FeaturesOk; Status(s); }
            return s;
        }

        public bool HasEvent(string text) => Core.Events.Any(e => e.Contains(text, StringComparison.Ordinal));

        public void Dispose() => Platform.Dispose();
    }

    public static TheoryData<Regs> All() => new(Enum.GetValues<Regs>());
    public static TheoryData<Regs> Modern() => new(Regs.MmioV2, Regs.PciModern);
    public static TheoryData<Regs> LegacyOnly() => new(Regs.MmioV1, Regs.PciLegacy);
    public static TheoryData<Regs> WithSizeRegister() => new(Regs.MmioV2, Regs.MmioV1, Regs.PciModern);

    private static ulong V1(Regs r) => Legacy(r) ? 0 : VirtioFeature.Bit(VirtioFeature.Version1);

    [Theory, MemberData(nameof(All))]
    public void DriverBeforeAcknowledgeIsRefused(Regs regs)
    {
        using var h = new Harness(regs);
        h.Status(DeviceStatus.Driver);
        Assert.Equal(DeviceStatus.Reset, h.Status());
        Assert.True(h.HasEvent("DRIVER before ACKNOWLEDGE"), string.Join("\n", h.Core.Events));
    }

    [Theory, MemberData(nameof(Modern))]
    public void FeaturesOkBeforeDriverIsRefused(Regs regs)
    {
        using var h = new Harness(regs);
        h.Status(DeviceStatus.Acknowledge);
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.FeaturesOk);
        Assert.Equal(DeviceStatus.Acknowledge, h.Status());
        Assert.True(h.HasEvent("FEATURES_OK before DRIVER"));
    }

    [Theory, MemberData(nameof(Modern))]
    public void DriverOkBeforeFeaturesOkIsRefusedOnModern(Regs regs)
    {
        using var h = new Harness(regs);
        h.Status(DeviceStatus.Acknowledge);
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        h.DriverFeatures(V1(regs));
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.DriverOk);
        Assert.Equal(DeviceStatus.Acknowledge | DeviceStatus.Driver, h.Status());
        Assert.False(h.Core.Activated);
        Assert.True(h.HasEvent("DRIVER_OK before FEATURES_OK"));
    }

    [Theory, MemberData(nameof(All))]
    public void ClearingStatusBitsWithoutResetIsRefused(Regs regs)
    {
        using var h = new Harness(regs);
        var s = h.Negotiate(V1(regs));
        h.Status(DeviceStatus.Acknowledge);
        Assert.Equal(s, h.Status());
        Assert.True(h.HasEvent("clears bits"));
        // Writing 0 is the one way back.
        h.Status(DeviceStatus.Reset);
        Assert.Equal(DeviceStatus.Reset, h.Status());
        Assert.Equal(0UL, h.Core.DriverFeatures);
    }

    [Theory, MemberData(nameof(LegacyOnly))]
    public void FeaturesOkOnLegacyIsRefused(Regs regs)
    {
        using var h = new Harness(regs);
        h.Status(DeviceStatus.Acknowledge);
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);
        Assert.Equal(DeviceStatus.Acknowledge | DeviceStatus.Driver, h.Status());
        Assert.True(h.HasEvent("legacy devices have no FEATURES_OK"));
    }

    [Theory, MemberData(nameof(WithSizeRegister))]
    public void QueueSizeZeroOrNotPowerOfTwoIsNotEnabled(Regs regs)
    {
        foreach (ulong size in new ulong[] { 0, 3, 12 })
        {
            using var h = new Harness(regs);
            h.Negotiate(V1(regs));
            h.SelectQueue(0);
            h.QueueSize(size);
            var r = h.Rings(Harness.Max);
            Assert.False(h.Enable(r.Desc, r.Avail, r.Used), $"size {size} enabled");
            Assert.True(h.HasEvent($"refused enabling queue 0: size {size}"), string.Join("\n", h.Core.Events));
            // At DRIVER_OK the queue is not live: notifying it is ignored and the device never reads its rings.
            h.Status(h.Status() | DeviceStatus.DriverOk);
            Assert.True(h.HasEvent("0 queue(s) live"));
            h.Notify(0);
            Assert.True(h.HasEvent("ignored notify for queue 0"));
            Assert.Equal(0, h.Device.Notifies);
            Assert.Empty(h.Log.Touched);
        }
    }

    [Theory, MemberData(nameof(WithSizeRegister))]
    public void QueueSizeAboveMaximumIsRefused(Regs regs)
    {
        using var h = new Harness(regs);
        h.Negotiate(V1(regs));
        h.SelectQueue(0);
        ulong before = regs == Regs.PciModern ? h.ReadQueueSize() : 0;
        h.QueueSize(Harness.Max * 2);
        Assert.True(h.Core.Events.Any(e => e.StartsWith("refused Queue", StringComparison.OrdinalIgnoreCase) && e.Contains("above")), string.Join("\n", h.Core.Events));
        if (regs == Regs.PciModern)
        {
            // The size register keeps its old value (the maximum, after reset).
            Assert.Equal(before, h.ReadQueueSize());
            Assert.Equal((ulong)Harness.Max, before);
        }
        else
        {
            // mmio QueueNum stays 0: the queue cannot be enabled.
            var r = h.Rings(Harness.Max);
            Assert.False(h.Enable(r.Desc, r.Avail, r.Used));
        }
    }

    [Fact]
    public void LegacyPciQueueWithANonPowerOfTwoMaximumIsRefused()
    {
        // Legacy PCI has no size register: the queue is the device's maximum, which must still be a valid ring size.
        using var h = new Harness(Regs.PciLegacy, maxQueueSize: 100);
        h.Negotiate(0);
        h.SelectQueue(0);
        var r = h.Rings(128);
        Assert.False(h.Enable(r.Desc, r.Avail, r.Used));
        Assert.True(h.HasEvent("refused enabling queue 0: size 100 is not a power of two"));
    }

    [Theory, MemberData(nameof(All))]
    public void RingsOutsideRamNeedResetAtDriverOkWithoutTouchingMemory(Regs regs)
    {
        using var h = new Harness(regs);
        var s = h.Negotiate(V1(regs));
        h.SelectQueue(0);
        h.QueueSize(Harness.Max);
        ulong far = 1UL << 32;   // 4 GiB: the machine has 4 MiB of RAM
        Assert.True(h.Enable(far, far + 0x1000, far + 0x2000));
        Assert.Null(h.Core.NeedsResetReason);
        int interrupts = h.Interrupts;
        h.Status(s | DeviceStatus.DriverOk);
        Assert.NotNull(h.Core.NeedsResetReason);
        Assert.Contains("queue 0", h.Core.NeedsResetReason);
        Assert.Contains("not accessible", h.Core.NeedsResetReason);
        // Legacy devices have no DEVICE_NEEDS_RESET bit; modern ones set it.
        Assert.Equal(!Legacy(regs), h.Status().HasFlag(DeviceStatus.DeviceNeedsReset));
        Assert.Equal(2u, h.Core.InterruptStatus & 2);
        Assert.Equal(interrupts + 1, h.Interrupts);
        Assert.True(h.HasEvent("DEVICE_NEEDS_RESET"));
        // The device checked the rings but never read or wrote them, and notifying does nothing.
        h.Notify(0);
        Assert.Equal(0, h.Device.Notifies);
        Assert.Empty(h.Log.Touched);
        Assert.NotEmpty(h.Log.Refused);
        // Reset clears the condition.
        h.Status(DeviceStatus.Reset);
        Assert.Null(h.Core.NeedsResetReason);
        Assert.Equal(DeviceStatus.Reset, h.Status());
    }

    [Theory, MemberData(nameof(All))]
    public void NotifyForAQueueNeverSetUpIsIgnored(Regs regs)
    {
        using var h = new Harness(regs);
        h.Notify(0);   // before anything
        Assert.True(h.HasEvent("ignored notify for queue 0"));
        var s = h.Negotiate(V1(regs));
        h.SelectQueue(0);
        h.QueueSize(Harness.Max);
        var r = h.Rings(Harness.Max);
        Assert.True(h.Enable(r.Desc, r.Avail, r.Used));
        h.Status(s | DeviceStatus.DriverOk);
        Assert.True(h.Core.Activated, $"{h.Status()} {r}" + string.Join("\n", h.Core.Events));
        Assert.True(h.HasEvent("1 queue(s) live"), string.Join("\n", h.Core.Events));
        h.Notify(1);    // exists, never enabled
        h.Notify(7);    // does not exist
        Assert.True(h.HasEvent("ignored notify for queue 1"));
        Assert.True(h.HasEvent("ignored notify for queue 7"));
        Assert.Equal(0, h.Device.Notifies);
        Assert.Null(h.Core.NeedsResetReason);
        Assert.Equal(s | DeviceStatus.DriverOk, h.Status());
        // The queue that was set up still works: an empty ring is looked at and nothing else happens.
        h.Notify(0);
        Assert.Equal(1, h.Device.Notifies);
        Assert.Null(h.Core.NeedsResetReason);
    }

    [Theory, MemberData(nameof(All))]
    public void ConfigAccessPastTheEndIsRefusedOrReadsZero(Regs regs)
    {
        using var h = new Harness(regs);
        int size = BlkSpec.ConfigSize;
        // Capacity: 64 KiB disk = 128 sectors, visible through the normal window.
        Assert.Equal(128UL, h.ConfigRead(BlkSpec.Capacity, 4));
        // The last bytes straddle the end: what lies beyond reads as zero.
        Assert.Equal(h.ConfigRead(size - 2, 1) | h.ConfigRead(size - 1, 1) << 8, h.ConfigRead(size - 2, 4));
        Assert.Equal(0UL, h.ConfigRead(size, 4));
        Assert.Equal(0UL, h.ConfigRead(size + 100, 1));
        Assert.True(h.HasEvent($"config read at {size} past the end"));
        // A write past the end, or straddling it, is refused and changes nothing (not even the generation).
        byte gen = h.Core.ConfigGeneration;
        var before = new byte[size];
        h.Device.ReadConfig(0, before);
        h.ConfigWrite(size, 1, 0xAA);
        h.ConfigWrite(size - 2, 4, 0xFFFF_FFFF);
        Assert.True(h.HasEvent($"refused config write of 1 bytes at {size}"));
        Assert.True(h.HasEvent($"refused config write of 4 bytes at {size - 2}"));
        Assert.Equal(gen, h.Core.ConfigGeneration);
        var after = new byte[size];
        h.Device.ReadConfig(0, after);
        Assert.Equal(before, after);
        // A write inside the window (the writeback byte) reaches the device, which ignores it: CONFIG_WCE was not
        // negotiated (§5.2.5), so the cache mode stays.
        h.ConfigWrite(BlkSpec.Writeback, 1, 0);
        Assert.Equal(1UL, h.ConfigRead(BlkSpec.Writeback, 1));
        Assert.NotEqual(gen, h.Core.ConfigGeneration);
    }

    [Theory, MemberData(nameof(All))]
    public void FeatureWritesAfterFeaturesOkAreRefused(Regs regs)
    {
        using var h = new Harness(regs);
        ulong wanted = V1(regs) | VirtioFeature.Bit(BlkFeature.Flush);
        var s = h.Negotiate(wanted);
        Assert.Equal(wanted, h.Core.DriverFeatures);
        if (Legacy(regs))
        {
            // Legacy has no FEATURES_OK: features are fixed at DRIVER_OK instead.
            h.SelectQueue(0);
            h.QueueSize(Harness.Max);
            var r = h.Rings(Harness.Max);
            Assert.True(h.Enable(r.Desc, r.Avail, r.Used));
            h.Status(s | DeviceStatus.DriverOk);
        }
        h.DriverFeatures(V1(regs) | VirtioFeature.Bit(BlkFeature.Discard));
        Assert.Equal(wanted, h.Core.DriverFeatures);
        Assert.True(h.HasEvent("refused driver features write after FEATURES_OK"));
    }

    [Theory, MemberData(nameof(All))]
    public void FeaturesNotOfferedAreDropped(Regs regs)
    {
        using var h = new Harness(regs);
        ulong offered = h.DeviceFeatures();
        Assert.Equal(h.Core.DeviceFeatures, offered);
        Assert.NotEqual(ulong.MaxValue, offered);
        h.Status(DeviceStatus.Acknowledge);
        h.Status(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        h.DriverFeatures(ulong.MaxValue);
        ulong expect = Legacy(regs) ? offered & 0xFFFF_FFFF : offered;
        Assert.Equal(expect, h.Core.DriverFeatures);
        Assert.True(h.HasEvent("does not offer"));
        Assert.True(h.HasEvent("dropped"));
    }

    [Theory, MemberData(nameof(Modern))]
    public void DeviceRejectingFeaturesLeavesFeaturesOkClear(Regs regs)
    {
        using var h = new Harness(regs, reject: f => VirtioFeature.Has(f, BlkFeature.Discard) ? "discard needs a backend that can punch holes" : null);
        var s = h.Negotiate(V1(regs) | VirtioFeature.Bit(BlkFeature.Discard));
        Assert.Equal(DeviceStatus.Acknowledge | DeviceStatus.Driver, h.Status());
        Assert.NotEqual(s, h.Status());
        Assert.True(h.HasEvent("rejected: discard needs a backend"));
        // DRIVER_OK cannot follow: FEATURES_OK never stuck.
        h.Status(s | DeviceStatus.DriverOk);
        Assert.False(h.Core.Activated);
        // Without the feature the device accepts.
        h.Status(DeviceStatus.Reset);
        h.Negotiate(V1(regs));
        Assert.True(h.Status().HasFlag(DeviceStatus.FeaturesOk));
    }
}
