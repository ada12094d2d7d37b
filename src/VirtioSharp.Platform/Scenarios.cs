using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

/// <summary>
/// The thread's failures and fixes as runnable scenarios: each builds a machine, probes a virtio-blk device through the
/// generic driver core, writes and reads back data with checksums, and reports what really happened.
/// </summary>
public static class Scenarios
{
    private const int Requests = 12;
    private const int RequestBytes = 8192;

    /// <summary>Every scenario, in presentation order.</summary>
    public static IReadOnlyList<Scenario> All { get; } = Build();

    private static IReadOnlyList<Scenario> Build()
    {
        var iommu = new SimPlatformOptions { HasIommu = true };
        var cache = new SimPlatformOptions { CpuCache = true };
        var ap = new BlockDeviceOptions { OfferAccessPlatform = true };
        var weak = new SimPlatformOptions { Ordering = new() { DeviceNeeds = BarrierKind.Platform } };
        var orderPlatform = new BlockDeviceOptions { OfferAccessPlatform = true, OfferOrderPlatform = true };
        return
        [
            new() { Name = "legacy-mmio-iommu-no-dma-api", Expected = ScenarioOutcome.Hang, Platform = iommu, Transport = "mmio-legacy",
                Placement = new() { BehindIommu = true }, Device = new() { LegacyOnly = true }, Driver = new() { Mode = PolicyMode.PreRfc },
                Description = "legacy virtio-mmio blk behind an IOMMU, driver hands it raw GPAs: ring reads fault, boot hangs" },
            new() { Name = "legacy-mmio-iommu-quirk", Expected = ScenarioOutcome.Ok, Platform = iommu, Transport = "mmio-legacy",
                Placement = new() { BehindIommu = true }, Device = new() { LegacyOnly = true }, Driver = new() { LegacyIommuQuirk = true },
                Description = "same machine, every device on DMA ops plus the legacy-behind-IOMMU quirk: boots" },
            new() { Name = "legacy-mmio-iommu-bypass", Expected = ScenarioOutcome.Ok, Platform = iommu, Transport = "mmio-legacy",
                Placement = new() { BehindIommu = true, IommuBypass = true }, Device = new() { LegacyOnly = true }, Driver = new() { Mode = PolicyMode.PreRfc },
                Description = "same machine with the IOMMU in bypass for the device (the workaround): works" },
            new() { Name = "noncoherent-ops-on-coherent-device", Expected = ScenarioOutcome.Corrupt, Platform = cache, Device = ap,
                Placement = new() { Coherent = true }, Driver = new() { FirmwareSaysCoherent = false },
                Description = "firmware calls a coherent device non-coherent: invalidation throws away what it wrote" },
            new() { Name = "coherent-ops-on-noncoherent-device", Expected = ScenarioOutcome.Corrupt, Platform = cache, Device = ap,
                Placement = new() { Coherent = false }, Driver = new() { FirmwareSaysCoherent = true },
                Description = "firmware calls a non-coherent device coherent: it reads stale RAM" },
            new() { Name = "noncoherent-ops-on-noncoherent-device", Expected = ScenarioOutcome.Ok, Platform = cache, Device = ap,
                Placement = new() { Coherent = false },
                Description = "matching ops: cache clean before the device reads, invalidate before the CPU reads" },
            new() { Name = "protected-no-dma-api-fault", Expected = ScenarioOutcome.DeviceFailed, Platform = new() { Protection = ProtectionMode.Fault },
                Driver = new() { Mode = PolicyMode.PreRfc },
                Description = "protected guest (TDX-like), device without ACCESS_PLATFORM, no DMA API: private pages fault" },
            new() { Name = "protected-no-dma-api-ciphertext", Expected = ScenarioOutcome.DeviceFailed, Platform = new() { Protection = ProtectionMode.Ciphertext },
                Driver = new() { Mode = PolicyMode.PreRfc },
                Description = "protected guest (SEV-like), device without ACCESS_PLATFORM, no DMA API: the device reads ciphertext" },
            new() { Name = "protected-linux-refuses", Expected = ScenarioOutcome.Refused, Platform = new() { Protection = ProtectionMode.Fault },
                Description = "today's Linux rule: a restricted-memory guest refuses a device lacking ACCESS_PLATFORM" },
            new() { Name = "protected-rfc-bounce", Expected = ScenarioOutcome.Ok, Platform = new() { Protection = ProtectionMode.Fault },
                Driver = new() { Mode = PolicyMode.Rfc2018 },
                Description = "the RFC's platform hook: bounce buffering through shared memory, verified data" },
            new() { Name = "protected-access-platform-bounce", Expected = ScenarioOutcome.Ok, Platform = new() { Protection = ProtectionMode.Fault }, Device = ap,
                Description = "device offers ACCESS_PLATFORM on a protected guest: bounce ops, verified data" },
            new() { Name = "iommu-access-platform-strict", Expected = ScenarioOutcome.Ok, Platform = iommu, Device = ap, Placement = new() { BehindIommu = true },
                Description = "modern device with ACCESS_PLATFORM behind an IOMMU: IOMMU ops, strict invalidation" },
            new() { Name = "iommu-access-platform-lazy", Expected = ScenarioOutcome.Ok, Platform = iommu, Device = ap, Placement = new() { BehindIommu = true },
                Driver = new() { Invalidation = InvalidationMode.Lazy },
                Description = "the same with lazy (batched) invalidation: fewer IOTLB flushes" },
            new() { Name = "iommu-missing-invalidation", Expected = ScenarioOutcome.StaleAccess, Platform = iommu, Device = ap, Placement = new() { BehindIommu = true },
                SkipInvalidation = true,
                Description = "a driver that unmaps without invalidating: the device still reaches the freed page" },
            new() { Name = "order-platform", Expected = ScenarioOutcome.Ok, Platform = iommu, Placement = new() { BehindIommu = true },
                Device = new() { OfferAccessPlatform = true, OfferOrderPlatform = true },
                Description = "hardware-like device negotiates ORDER_PLATFORM: platform barriers chosen" },
            new() { Name = "order-smp-device-smp-barriers", Expected = ScenarioOutcome.Ok, Platform = new() { Ordering = new() },
                Description = "store buffers modelled, software device (SMP ordering is enough), SMP barriers: works" },
            new() { Name = "order-weak-device-smp-barriers", Expected = ScenarioOutcome.DeviceFailed, Platform = weak,
                Description = "weakly ordered device without ORDER_PLATFORM: the driver's SMP barriers never reach it, it reads a stale descriptor" },
            new() { Name = "order-weak-device-order-platform", Expected = ScenarioOutcome.Ok, Platform = weak, Device = orderPlatform,
                Description = "the same device offers ORDER_PLATFORM: platform barriers on both sides, verified data" },
            new() { Name = "order-weak-device-side-smp", Expected = ScenarioOutcome.Corrupt, Platform = weak, Device = orderPlatform,
                DeviceIgnoresOrderPlatform = true,
                Description = "ORDER_PLATFORM negotiated but the device keeps SMP barriers: the driver sees used entries before their status bytes (IoErr) and their data" },
        ];
    }

    internal static Scenario Find(string name) =>
        All.FirstOrDefault(s => s.Name == name) ?? throw new ArgumentException(
            $"no scenario named '{name}'; known: {string.Join(", ", All.Select(s => s.Name))}", nameof(name));

    /// <summary>Runs <paramref name="s"/> and reports what really happened, with the evidence.</summary>
    public static ScenarioResult Run(Scenario s)
    {
        var trace = new List<string>();
        var evidence = new List<string>();
        using var m = new SimMachine(s.Platform);
        var disk = new MemoryBackend(4 << 20);
        var device = new BlockDevice<DeviceMemory<TranslatorRef, PortRef>>(disk, s.Device);
        var slot = s.Transport switch
        {
            "mmio" => m.AddMmio(device, s.Name, legacy: false, s.Placement),
            "mmio-legacy" => m.AddMmio(device, s.Name, legacy: true, s.Placement),
            "pci-legacy" => m.AddPci(device, s.Name, PciMode.Legacy, s.Placement),
            _ => m.AddPci(device, s.Name, PciMode.Modern, s.Placement),
        };
        slot.Core.IgnoreOrderPlatform = s.DeviceIgnoresOrderPlatform;
        // With store buffers the driver also polls mid-turn; its kicks must wait for the machine, not re-enter the device.
        if (m.Platform.Ordering is not null) m.Deferred = true;
        string platformText = Describe(s);
        string decision = "-";
        ScenarioOutcome outcome;
        BlkDriver? drv = null;
        try
        {
            drv = BlkDriver.Probe(slot.DriverTransport(), slot.Environment(s.Driver with { Trace = trace.Add }));
            decision = drv.Device.Decision.Summary;
            if (s.SkipInvalidation && drv.Device.Dma is IommuDmaOps iommuOps) iommuOps.SkipInvalidation = true;
            if (m.Platform.Ordering is { } order) order.Observer = drv.Device.PollUsed;
            outcome = Workload(s, m, slot, drv, disk, evidence);
        }
        catch (VirtioProbeException e)
        {
            outcome = ScenarioOutcome.Refused;
            evidence.Add(e.Message);
            decision = trace.LastOrDefault(t => t.StartsWith("decision: ", StringComparison.Ordinal))?["decision: ".Length..] ?? "probe failed";
        }
        catch (TimeoutException e)
        {
            outcome = ScenarioOutcome.Hang;
            evidence.Add(e.Message);
        }
        finally
        {
            drv?.Dispose();
        }
        // The machine's own records come first when something went wrong: they are the proof.
        var proof = new List<string>();
        if (m.Platform.Iommu is { FaultCount: > 0 } iommu)
        {
            proof.Add($"IOMMU faults: {iommu.FaultCount}, first: {iommu.Faults[0]}");
            proof.AddRange(iommu.Faults.Skip(1).Take(2).Select(f => "  " + f));
        }
        if (m.Platform.Protection is { Violations: > 0 } prot)
        {
            proof.Add($"device touched private pages {prot.Violations} times, first: {prot.Log[0]}");
            proof.AddRange(prot.Log.Skip(1).Take(1).Select(l => "  " + l));
        }
        if (m.Platform.Cache is { DiscardedDirtyLines: > 0 } c) proof.Add($"cache invalidation discarded {c.DiscardedDirtyLines} dirty lines the device had written");
        if (outcome is ScenarioOutcome.Ok or ScenarioOutcome.StaleAccess) evidence.AddRange(proof);
        else evidence.InsertRange(0, proof);
        // The ordering model's counters are context, not proof: after what went wrong.
        if (m.Platform.Ordering is { } model) evidence.Add(model.Describe());
        // Read the transport's log: removal resets the device, which clears the live NEEDS_RESET state.
        if (slot.Core.Events.FirstOrDefault(e => e.StartsWith("DEVICE_NEEDS_RESET", StringComparison.Ordinal)) is { } why)
        {
            evidence.Add("device: " + why);
            // A modern driver sees DEVICE_NEEDS_RESET; a legacy one cannot, and just waits forever.
            if (!slot.Core.Legacy && outcome is ScenarioOutcome.Hang or ScenarioOutcome.Refused) outcome = ScenarioOutcome.DeviceFailed;
        }
        trace.AddRange(slot.Core.Events.Select(e => "transport: " + e));
        return new ScenarioResult(s.Name, platformText, s.Transport, decision, outcome, s.Expected, evidence, trace);
    }

    private static string Describe(Scenario s)
    {
        var parts = new List<string>();
        if (s.Platform.HasIommu) parts.Add(s.Placement.BehindIommu ? s.Placement.IommuBypass ? "IOMMU(bypass)" : "IOMMU" : "IOMMU(not used)");
        if (s.Platform.Protection is { } p) parts.Add($"protected({p.ToString().ToLowerInvariant()})");
        if (s.Platform.Ordering is { } o) parts.Add(o.DeviceNeeds == BarrierKind.Platform ? "store buffers, weakly ordered dev" : "store buffers");
        if (s.Platform.CpuCache) parts.Add(s.Placement.Coherent ? "cache, coherent dev" : "cache, non-coherent dev");
        return parts.Count == 0 ? "plain" : string.Join(", ", parts);
    }

    private static ScenarioOutcome Workload(Scenario s, SimMachine m, SimSlot slot, BlkDriver drv, MemoryBackend disk, List<string> evidence)
    {
        var rng = new Random(42);
        var written = new byte[Requests][];
        int bad = 0;
        for (int i = 0; i < Requests; i++)
        {
            written[i] = new byte[RequestBytes];
            rng.NextBytes(written[i]);
            var st = drv.Write((ulong)(i * RequestBytes / 512), written[i]);
            if (st != BlkStatus.Ok) { bad++; if (evidence.Count < 4) evidence.Add($"write {i}: status {st}"); }
            if (drv.Device.NeedsReset) throw new TimeoutException("the device set DEVICE_NEEDS_RESET; requests will never complete");
        }
        drv.Flush();
        for (int i = 0; i < Requests; i++)
        {
            var onDisk = disk.Data.Slice(i * RequestBytes, RequestBytes);
            if (Hash(onDisk) != Hash(written[i])) { bad++; if (evidence.Count < 6) evidence.Add($"disk sectors of write {i}: checksum {Hash(onDisk):x16}, expected {Hash(written[i]):x16}"); }
            var back = new byte[RequestBytes];
            var st = drv.Read((ulong)(i * RequestBytes / 512), back);
            if (st != BlkStatus.Ok) { bad++; if (evidence.Count < 8) evidence.Add($"read {i}: status {st}"); }
            else if (Hash(back) != Hash(written[i])) { bad++; if (evidence.Count < 8) evidence.Add($"read {i}: checksum {Hash(back):x16}, expected {Hash(written[i]):x16}"); }
        }

        if (s.SkipInvalidation || drv.Device.Dma is IommuDmaOps)
        {
            var ops = (IommuDmaOps)drv.Device.Dma;
            var last = ops.LastUnmapped;
            ulong iova = last.Bus;
            var st = slot.Device.Domain!.Translate(iova, last.DeviceWrites ? Access.Write : Access.Read, out ulong gpa, out _);
            evidence.Add($"IOTLB invalidations: {slot.Device.Domain.Invalidations}, ops {ops.Name}");
            if (st == MemStatus.Ok && ops.Mode == InvalidationMode.Lazy && !s.SkipInvalidation)
            {
                evidence.Add($"lazy mode: IOVA 0x{iova:x} stays reachable until the batched flush ({ops.PendingInvalidations} invalidations pending)");
                ops.Flush();
                st = slot.Device.Domain.Translate(iova, last.DeviceWrites ? Access.Write : Access.Read, out gpa, out _);
            }
            if (st == MemStatus.Ok)
            {
                evidence.Insert(0, $"IOVA 0x{iova:x} was unmapped, yet the device still reaches GPA 0x{gpa:x} through a stale IOTLB entry");
                return ScenarioOutcome.StaleAccess;
            }
            evidence.Add($"after unmap, IOVA 0x{iova:x} faults ({st.Describe()}): the device lost access as it should");
        }
        if (bad == 0)
        {
            evidence.Insert(0, $"{Requests} writes and {Requests} reads of {RequestBytes} bytes verified by checksum, disk content matches; DMA ops {drv.Device.Dma.Name}, barriers {drv.Device.Decision.Barriers}");
            if (drv.Device.Dma.Stats.BounceBytesIn > 0) evidence.Add($"bounced {drv.Device.Dma.Stats.BounceBytesIn} bytes in, {drv.Device.Dma.Stats.BounceBytesOut} out");
            return ScenarioOutcome.Ok;
        }
        evidence.Insert(0, $"{bad} of {3 * Requests} checks failed (write status, disk checksum, read-back checksum)");
        return ScenarioOutcome.Corrupt;
    }

    private static ulong Hash(ReadOnlySpan<byte> data)
    {
        ulong h = 14695981039346656037UL;   // FNV-1a
        foreach (var b in data) { h ^= b; h *= 1099511628211UL; }
        return h;
    }
}
