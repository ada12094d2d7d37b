namespace VirtioSharp.Tests.Nbd;

/// <summary>NBD tests that measure the whole process (allocations, timing) run alone.</summary>
[CollectionDefinition("NbdSerial", DisableParallelization = true)]
public class NbdSerialCollection;
