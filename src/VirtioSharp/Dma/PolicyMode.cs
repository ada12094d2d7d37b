namespace VirtioSharp.Dma;

/// <summary>Which rule set the policy follows.</summary>
public enum PolicyMode : byte
{
    /// <summary>Today's Linux: a restricted-memory platform refuses devices lacking VERSION_1 or ACCESS_PLATFORM.</summary>
    LinuxToday,
    /// <summary>The 2018 RFC: every device gets DMA ops; a platform hook forces bounce ops for restricted memory.</summary>
    Rfc2018,
    /// <summary>Before the RFC: devices without ACCESS_PLATFORM bypass the DMA API and get raw guest-physical addresses.</summary>
    PreRfc,
}
