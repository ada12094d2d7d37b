using Microsoft.Extensions.Logging;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// Builds a vring's device queue in the right address space (IOVAs through the IOTLB with ACCESS_PLATFORM, else the
/// front-end's user addresses mapped to guest-physical) and restores its position: from SET_VRING_BASE, or after a
/// back-end restart from the inflight region, resubmitting what was popped but never used (vhost-user.rst
/// "Inflight I/O tracking"). Everything it reads from the region or the rings is validated; a failure is a reason.
/// </summary>
internal static class VringRecovery
{
    /// <summary>
    /// The queue, ready to serve, or null with <paramref name="failure"/>; null with no failure if the ring was paused
    /// while a ring access waited for its IOTLB translation (<see cref="MemStatus.Interrupted"/>): not the driver's fault,
    /// the next start tries again.
    /// </summary>
    public static DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>? Prepare(Vring v, VhostMemoryTable mem, ulong features, VhostIotlb iotlb, DirtyLog dirtyLog,
        VhostInflightState inflight, ILogger log, VhostStats stats, out bool signalAtStart, out string position, out string? failure)
    {
        signalAtStart = false;
        position = "";
        var opts = QueueOptions.ForDevice(features);
        SplitRingLayout layout;
        IAddressTranslator translator;
        if (VirtioFeature.Has(features, VirtioFeature.AccessPlatform))
        {
            // Everything is an IOVA, translated through the IOTLB the front-end fills.
            translator = iotlb;
            layout = new SplitRingLayout(v.Num, v.DescAddr, v.AvailAddr, v.UsedAddr, opts.EventIdx, RingEndian.Little);
        }
        else
        {
            // Ring addresses are front-end user addresses; descriptors carry guest-physical ones.
            translator = IdentityTranslator.Instance;
            // Packed: desc = descriptor ring, avail = driver event area, used = device event area (4 bytes each).
            if (!mem.TryUserToGpa(v.DescAddr, SplitRingLayout.DescBytes(v.Num), out ulong d) ||
                !mem.TryUserToGpa(v.AvailAddr, opts.Packed ? 4UL : SplitRingLayout.AvailBytes(v.Num), out ulong a) ||
                !mem.TryUserToGpa(v.UsedAddr, opts.Packed ? 4UL : SplitRingLayout.UsedBytes(v.Num), out ulong u))
            {
                failure = $"vring {v.Index} addresses desc 0x{v.DescAddr:x} avail 0x{v.AvailAddr:x} used 0x{v.UsedAddr:x} are outside every memory region";
                return null;
            }
            layout = new SplitRingLayout(v.Num, d, a, u, opts.EventIdx, RingEndian.Little);
        }
        var q = new DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>(new(new TranslatorRef(translator), new RamPort(mem.Memory, dirtyLog)), layout, opts);
        var st = q.CheckRings();
        if (st != MemStatus.Ok) { failure = st == MemStatus.Interrupted ? null : $"vring {v.Index} rings are not accessible: {st.Describe()}"; return null; }
        failure = opts.Packed
            ? RestorePacked(v, q, inflight, log, stats, out signalAtStart, out position)
            : RestoreSplit(v, q, inflight, log, stats, out signalAtStart, out position);
        if (ReferenceEquals(failure, Interrupted)) { failure = null; return null; }
        return failure is null ? q : null;
    }

    private static string? RestoreSplit(Vring v, DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> q, VhostInflightState inflight, ILogger log,
        VhostStats stats, out bool signalAtStart, out string position)
    {
        signalAtStart = false;
        position = "";
        var inf = inflight.SplitFor(v.Index);
        // The region is made for the device's largest queues (QEMU's queue-size); a driver may use a smaller ring
        // (SeaBIOS takes 256 entries of a queue-size=1024 disk): its heads are the region's first entries.
        if (inf is not null && v.Num > inflight.QueueSize) return SizeMismatch(v, inflight);
        var us = q.Memory.LoadU16Acquire(q.Layout.UsedIdxAddr, out ushort usedIdx);
        if (us != MemStatus.Ok) return us == MemStatus.Interrupted ? Interrupted : $"vring {v.Index}: cannot read used idx";
        ushort nextAvail = (ushort)v.Base;
        List<ushort>? heads = null;
        if (inf is not null)
        {
            if (inf.IsInitialized)
            {
                heads = inf.Recover(usedIdx);
                // A region written for a larger ring than this one names heads it cannot have (never trusted).
                foreach (ushort h in heads)
                    if (h >= v.Num) return $"vring {v.Index}: the inflight region names head {h} in flight, beyond the ring's {v.Num} entries";
                // libvhost-user's rule: what was popped is used + still in flight.
                nextAvail = (ushort)(usedIdx + heads.Count);
                if (heads.Count > 0) log.LogInformation("vring {Index}: resubmitting {Count} in-flight requests after reconnect", v.Index, heads.Count);
                Interlocked.Add(ref stats.Resubmitted, heads.Count);
                // The previous back-end may have died between publishing used entries and signalling them; if the
                // driver has nothing else in flight, no later completion would interrupt it. One spurious interrupt
                // is harmless (the driver finds nothing new), a lost one hangs the guest.
                if (usedIdx != 0) signalAtStart = true;
            }
            else inf.Initialize(usedIdx);
        }
        // Without a log, uses the last run could not publish come first (with one they are in flight in it: resubmitted).
        var unpublished = inf is null ? v.Unpublished : null;
        q.Restore(new QueueRestore { Position = QueuePosition.Split(nextAvail, usedIdx), ResubmitHeads = heads, Log = inf, Unpublished = unpublished });
        if (unpublished is { Length: > 0 }) signalAtStart = true;
        position = $"base {nextAvail}, used {usedIdx}{(unpublished is { Length: > 0 } u ? $", {u.Length} used entries published" : "")}";
        return null;
    }

    /// <summary>
    /// Packed rings keep no used index in guest memory, and after a crash QEMU 7.2 can only resend the base of the
    /// previous start, so with an inflight region the region, not SET_VRING_BASE, says where the ring stands.
    /// </summary>
    private static string? RestorePacked(Vring v, DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> q, VhostInflightState inflight, ILogger log,
        VhostStats stats, out bool signalAtStart, out string position)
    {
        signalAtStart = false;
        position = $"packed base 0x{v.Base:x8}";
        var sent = VringBase.DecodePacked(v.Base);
        var inf = inflight.PackedFor(v.Index);
        if (inf is not null && v.Num != inflight.QueueSize) return SizeMismatch(v, inflight);
        try
        {
            if (inf is null || !inf.IsInitialized)
            {
                // Without a log, uses the last run could not publish come first, right after the base's used position.
                var unpublished = inf is null ? v.Unpublished : null;
                q.Restore(new QueueRestore { Position = sent, Unpublished = unpublished });
                if (unpublished is { Length: > 0 } u) { signalAtStart = true; position += $", {u.Length} used entries published"; }
                if (inf is null) return null;
                inf.Initialize(q.Position.NextUsed, q.Position.UsedWrap);
                q.Restore(new QueueRestore { Position = sent, PackedLog = inf });
                return null;
            }
            var ringMem = q.Memory;
            ulong desc = q.Layout.Desc;
            var (nextUsed, usedWrap, chains) = inf.Recover(slot =>
                ringMem.LoadU16Acquire(desc + (ulong)slot * PackedDesc.Size + PackedDesc.FlagsOffset, out ushort f) == MemStatus.Ok ? PackedRing.Le(f) : null);
            q.Restore(new QueueRestore { Position = sent with { NextUsed = (ushort)nextUsed, UsedWrap = usedWrap }, ResubmitChains = chains, PackedLog = inf });
            if (chains.Count > 0) log.LogInformation("vring {Index}: resubmitting {Count} in-flight requests after reconnect", v.Index, chains.Count);
            Interlocked.Add(ref stats.Resubmitted, chains.Count);
            // As for split rings: a used descriptor may have been published but never signalled before the crash.
            signalAtStart = nextUsed != 0 || !usedWrap;
            position = $"packed base 0x{VringBase.Encode(q.Position, true):x8} from the inflight region (front-end sent 0x{v.Base:x8})";
            return null;
        }
        catch (ArgumentOutOfRangeException e) { return $"vring {v.Index}: {e.Message}"; }
        catch (Exception e) when (e is InvalidDataException or ArgumentException)
        {
            return $"vring {v.Index}: packed inflight region cannot be recovered: {e.Message}";
        }
    }

    // RestoreSplit's answer when the pause cut its used idx read short (compared by reference).
    private static readonly string Interrupted = "interrupted";

    private static string SizeMismatch(Vring v, VhostInflightState inflight) =>
        $"vring {v.Index} has {v.Num} entries but the inflight region was made for queues of at most {inflight.QueueSize}";
}
