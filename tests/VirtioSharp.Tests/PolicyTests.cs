using VirtioSharp.Dma;
using VirtioSharp.Platform;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests;

/// <summary>One test per DMA policy rule, read from the decision (ops, coherence, barriers, refusal, features, reasons).</summary>
public class PolicyTests
{
    private static readonly ulong V1 = VirtioFeature.Bit(VirtioFeature.Version1);
    private static readonly ulong AP = VirtioFeature.Bit(VirtioFeature.AccessPlatform);
    private static readonly ulong OP = VirtioFeature.Bit(VirtioFeature.OrderPlatform);
    private static readonly ulong Ring = VirtioFeature.Bit(VirtioFeature.IndirectDesc) | VirtioFeature.Bit(VirtioFeature.EventIdx);

    private static DmaDecision Decide(PlatformFacts facts, ulong offered, TransportKind t = TransportKind.Pci,
        PolicyMode mode = PolicyMode.LinuxToday, ulong wanted = 0) => DmaPolicy.Decide(facts, t, offered, wanted, mode);

    private static void AssertReason(DmaDecision d, string fragment) =>
        Assert.True(d.Reasons.Any(r => r.Contains(fragment, StringComparison.OrdinalIgnoreCase)),
            $"no reason mentions '{fragment}':\n{string.Join("\n", d.Reasons)}");

    [Fact]
    public void NoAccessPlatformGivesDirectOps()
    {
        var d = Decide(new PlatformFacts(), V1 | Ring, wanted: Ring);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Direct, d.Ops);
        Assert.True(d.UsesDmaApi);
        Assert.False(d.NonCoherentOps);
        Assert.Equal(BarrierKind.Smp, d.Barriers);
        Assert.Equal(V1 | Ring, d.Features);
        AssertReason(d, "ACCESS_PLATFORM not negotiated");
    }

    [Fact]
    public void AccessPlatformBehindIommuGivesIommuOps()
    {
        var d = Decide(new PlatformFacts { BehindIommu = true }, V1 | AP);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Iommu, d.Ops);
        Assert.Equal(V1 | AP, d.Features);
        AssertReason(d, "behind an IOMMU");

        var lazy = Decide(new PlatformFacts { BehindIommu = true, Invalidation = InvalidationMode.Lazy }, V1 | AP);
        Assert.Equal(InvalidationMode.Lazy, lazy.Invalidation);
        AssertReason(lazy, "lazy");
    }

    [Fact]
    public void WantedFeaturesAreIntersectedWithOffered()
    {
        var d = Decide(new PlatformFacts(), V1 | VirtioFeature.Bit(VirtioFeature.EventIdx) | VirtioFeature.Bit(BlkFeature.Flush),
            wanted: Ring);
        Assert.Equal(V1 | VirtioFeature.Bit(VirtioFeature.EventIdx), d.Features);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RestrictedMemoryWithoutAccessPlatformIsRefusedToday(bool version1)
    {
        var d = Decide(new PlatformFacts { RestrictedMemory = true }, version1 ? V1 : 0,
            t: version1 ? TransportKind.Pci : TransportKind.PciLegacy);
        Assert.True(d.Refused);
        AssertReason(d, "refused");
        AssertReason(d, "ACCESS_PLATFORM");
        if (!version1) Assert.Contains("VERSION_1", d.Reasons[^1]);
        Assert.Throws<InvalidOperationException>(() => DmaOpsFactory.Create(d, PlainDmaPlatform.Create(1 << 20)));
    }

    [Fact]
    public void RestrictedMemoryWithAccessPlatformGivesBounceOps()
    {
        var d = Decide(new PlatformFacts { RestrictedMemory = true }, V1 | AP);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Bounce, d.Ops);
        AssertReason(d, "restricted memory");
    }

    [Fact]
    public void RestrictedMemoryUnderTheRfcGivesBounceOpsWithoutAccessPlatform()
    {
        var d = Decide(new PlatformFacts { RestrictedMemory = true }, V1, mode: PolicyMode.Rfc2018);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Bounce, d.Ops);
        Assert.True(d.UsesDmaApi);
        Assert.Equal(0UL, d.Features & AP);
        AssertReason(d, "RFC platform hook");
    }

    [Fact]
    public void LegacyBehindIommuWithQuirkGetsIommuOps()
    {
        var d = Decide(new PlatformFacts { BehindIommu = true, LegacyIommuQuirk = true }, 0, TransportKind.MmioLegacy);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Iommu, d.Ops);
        AssertReason(d, "quirk");
    }

    [Fact]
    public void LegacyBehindIommuWithoutQuirkGetsDirectOpsWithAWarningAndHangs()
    {
        var d = Decide(new PlatformFacts { BehindIommu = true }, 0, TransportKind.MmioLegacy);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Direct, d.Ops);
        Assert.Contains(d.Reasons, r => r.StartsWith("warning:", StringComparison.Ordinal) && r.Contains("fault"));

        var r = RoundTrip.Run(new RoundTripSetup
        {
            Name = "legacy behind IOMMU, no quirk", Platform = new SimPlatformOptions { HasIommu = true }, BehindIommu = true,
            Offered = 0, Transport = TransportKind.MmioLegacy, Chains = 16,
        });
        Assert.True(r.Hung);
        Assert.True(r.IommuFaults > 0);
        Assert.Equal(0, r.Verified);
        Assert.Equal("hang", r.Outcome);
    }

    [Fact]
    public void IommuBypassGivesDirectOps()
    {
        var d = Decide(new PlatformFacts { BehindIommu = true, IommuBypass = true }, V1 | AP);
        Assert.False(d.Refused);
        Assert.Equal(DmaOpsKind.Direct, d.Ops);
        AssertReason(d, "bypass");
    }

    [Fact]
    public void OrderPlatformSelectsPlatformBarriers()
    {
        var with = Decide(new PlatformFacts(), V1 | AP | OP);
        Assert.Equal(BarrierKind.Platform, with.Barriers);
        Assert.True(VirtioFeature.Has(with.Features, VirtioFeature.OrderPlatform));
        AssertReason(with, "ORDER_PLATFORM negotiated");

        var without = Decide(new PlatformFacts { BehindIommu = true }, V1 | AP);
        Assert.Equal(BarrierKind.Smp, without.Barriers);
        AssertReason(without, "did not offer ORDER_PLATFORM");
    }

    [Theory]
    [InlineData(TransportKind.MmioLegacy)]
    [InlineData(TransportKind.PciLegacy)]
    public void LegacyTransportCannotNegotiateHighFeatureBits(TransportKind t)
    {
        var d = Decide(new PlatformFacts { BehindIommu = true }, V1 | AP | OP | Ring, t, wanted: Ring);
        Assert.Equal(0UL, d.Features >> 32);
        Assert.Equal(Ring, d.Features);
        Assert.Equal(DmaOpsKind.Direct, d.Ops);              // ACCESS_PLATFORM was lost with the high bits
        AssertReason(d, "32 feature bits");
        Assert.False(DmaPolicy.IsLegacyTransport(TransportKind.Pci));
        Assert.True(DmaPolicy.IsLegacyTransport(t));
    }

    [Fact]
    public void NonCoherentPlatformWrapsOpsOnlyWithAccessPlatform()
    {
        var d = Decide(new PlatformFacts { Coherent = false }, V1 | AP);
        Assert.True(d.NonCoherentOps);
        AssertReason(d, "does not snoop");

        var hv = Decide(new PlatformFacts { Coherent = false }, V1);
        Assert.False(hv.NonCoherentOps);
        AssertReason(hv, "emulated by the hypervisor");
    }

    [Fact]
    public void AccessPlatformWithoutVersion1IsRefused()
    {
        var d = Decide(new PlatformFacts(), AP, TransportKind.Pci);
        Assert.True(d.Refused);
        AssertReason(d, "without VERSION_1");
    }

    [Fact]
    public void ProtectedMemoryBehindTranslatingIommuIsRefused()
    {
        var d = Decide(new PlatformFacts { RestrictedMemory = true, BehindIommu = true }, V1 | AP);
        Assert.True(d.Refused);
        AssertReason(d, "bypass");
    }

    [Fact]
    public void PreRfcDriverSkipsTheDmaApi()
    {
        var d = Decide(new PlatformFacts { RestrictedMemory = true }, V1, mode: PolicyMode.PreRfc);
        Assert.False(d.Refused);
        Assert.False(d.UsesDmaApi);
        Assert.Equal(DmaOpsKind.Direct, d.Ops);
        AssertReason(d, "no DMA API");
        Assert.StartsWith("no DMA API", d.Summary);
    }

    [Fact]
    public void DmaOffsetAppliesToDirectOpsWithAccessPlatformOnly()
    {
        var facts = new PlatformFacts { DmaOffset = 0x80_0000_0000UL };
        var d = Decide(facts, V1 | AP);
        Assert.Equal(facts.DmaOffset, d.DmaOffset);
        var ops = DmaOpsFactory.Create(d, PlainDmaPlatform.Create(1 << 20));
        Assert.Equal(DmaStatus.Ok, ops.Map(0x1000, 16, DmaDirection.ToDevice, out var m));
        Assert.Equal(0x1000 + facts.DmaOffset, m.Bus);

        Assert.Equal(0UL, Decide(facts, V1).DmaOffset);
    }
}
